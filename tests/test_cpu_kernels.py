"""ms_ptuning's CPU kernels (ms_ptuning/device/cpu_kernels.cc), the CPU's choice in the native backbones, against
float64 numpy and against the compositions of MindSpore kernels the devices' choice runs: GELU (erf and tanh)
as close to the exact function as real torch's GELU over [-20, 20], its derivative within 4e-7 and at least as
close as the composition, and at ±inf; GELU of a product plus its bias; LayerNorm and its three gradients; BERT's
output block LayerNorm((a + bias)·mask + residual) with and without dropout's mask; attention's softmax(scores·scale
+ mask) and its backward, with float32-min padding and −inf (GPT-2's future) in the mask; the linear layers' GEMM
with and without bias, both weight layouts, and its three gradients; op by op and compiled alike, and float16
inputs computed in float32. The dropout masks' kernel is tested in tests/test_dropout.py, the backbones built from
all of them against torch in tests/test_native_backbones.py."""

import math
import subprocess
import sys

import mindspore
import numpy as np
import pytest
from mindspore import Tensor, nn, ops
from scipy.special import erf

from ms_ptuning.device import cpu_kernels
from ms_ptuning.native import functional as F
from ms_ptuning.training.graph_steps import graph_mode


@pytest.fixture(autouse=True)
def built():
    assert cpu_kernels.available()  # the CPU's set-up includes g++


class WithGradients(nn.Cell):
    """f's output and the gradients of Σ f·dy with respect to all its inputs."""

    def __init__(self, f):
        super().__init__()
        self.f, self.grad = f, ops.GradOperation(get_all=True, sens_param=True)

    def construct(self, *inputs):
        return self.f(*inputs[:-1]), self.grad(self.f)(*inputs)


def run(f, inputs, compiled: bool):
    cell = WithGradients(f)
    tensors = [Tensor(value) for value in inputs]
    if compiled:
        with graph_mode():
            output, grads = cell(*tensors)
    else:
        output, grads = cell(*tensors)
    return output.asnumpy(), [grad.asnumpy() for grad in grads]


def gelu_reference(x, tanh: bool):
    x = x.astype(np.float64)
    if tanh:
        inner = math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)
        t = np.tanh(inner)
        return 0.5 * x * (1 + t), 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * math.sqrt(2 / math.pi) * (
            1 + 3 * 0.044715 * x * x)
    cdf = 0.5 * (1 + erf(x / math.sqrt(2)))
    return x * cdf, cdf + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi)


TORCH_GELU = """import sys
import numpy as np
import torch
x = torch.from_numpy(np.load(sys.argv[1]))
np.save(sys.argv[2], torch.nn.functional.gelu(x, approximate=sys.argv[3]).numpy())
"""


def torch_gelu(x: np.ndarray, approximate: str, directory) -> np.ndarray:
    """Real torch's GELU of float32 `x`, in a process of its own (in this one `import torch` is mindtorch)."""
    source, result = str(directory / "x.npy"), str(directory / "y.npy")
    np.save(source, x)
    done = subprocess.run([sys.executable, "-c", TORCH_GELU, source, result, approximate], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return np.load(result)


@pytest.mark.parametrize("name, kernel", [("gelu", "gelu"), ("gelu_new", "gelu_tanh")])
@pytest.mark.parametrize("compiled", [False, True])
def test_gelu_as_close_to_the_exact_function_as_torch_and_its_derivative_within_4e_7(name, kernel, compiled,
                                                                                     tmp_path):
    activation = F.activation(name, device_kernels=False)
    assert isinstance(activation, F.CpuActivation)
    x = np.concatenate([np.linspace(-20, 20, 40_001), np.linspace(-6, 6, 120_001),
                        [0.0, -0.0, 1e-30, -1e-30]]).astype(np.float32)
    ones = np.ones_like(x)
    y, (dx,) = run(activation, [x, ones], compiled)
    y_exact, dx_exact = gelu_reference(x, name != "gelu")
    # the forward: no further from the exact function than torch's own GELU in float32 (whose erf form, like the
    # kernel's, loses ~1e-6 where ½(1 + erf) cancels), and within 4e-7 of the exact tanh form
    torch_error = np.abs(torch_gelu(x, "none" if name == "gelu" else "tanh", tmp_path) - y_exact).max()
    assert np.abs(y - y_exact).max() <= torch_error + 1e-7
    assert np.abs(y - y_exact).max() <= (1.5e-6 if name == "gelu" else 4e-7) * np.maximum(1, np.abs(y_exact)).max()
    # the derivative: within 4e-7 and at least as close as the composition of MindSpore's kernels
    assert np.abs(dx - dx_exact).max() <= 4e-7 * 1.2
    _, (composed_dx,) = run(F.ACTIVATIONS[name](), [x, ones], compiled)
    assert np.abs(dx - dx_exact).max() <= np.abs(composed_dx - dx_exact).max() + 1e-7
    infinite, _ = run(activation, [np.array([np.inf, -np.inf, 100, -100], np.float32), np.ones(4, np.float32)],
                      compiled)
    assert infinite[0] == np.inf and infinite[2] == 100 and infinite[3] == 0  # −inf·0 is NaN, as in torch
    # float16 inputs are computed in float32 and rounded once
    half, _ = run(activation, [x[::97].astype(np.float16), ones[::97].astype(np.float16)], compiled)
    assert half.dtype == np.float16
    np.testing.assert_allclose(half, y_exact[::97].astype(np.float16), rtol=1e-3, atol=1e-3)


class BiasThenActivation(nn.Cell):
    """The composition the fused kernel replaces: BiasAdd, then the CPU's activation kernel."""

    def __init__(self, name: str):
        super().__init__()
        self.activation = F.activation(name, device_kernels=False)

    def construct(self, a, bias):
        return self.activation(ops.bias_add(a, bias))


@pytest.mark.parametrize("name", ["gelu", "gelu_new"])
@pytest.mark.parametrize("compiled", [False, True])
def test_activation_of_a_product_plus_its_bias_is_biasadd_then_the_activation(name, compiled):
    fused = F.bias_activation(name, device_kernels=False)
    assert isinstance(fused, F.CpuBiasActivation) and F.bias_activation(name, device_kernels=True) is None
    rng = np.random.default_rng(2)
    a = (rng.standard_normal((111, 40)) * 3).astype(np.float32)  # 111 rows: blocks of 16 and a rest
    bias = rng.standard_normal(40).astype(np.float32)
    dy = rng.standard_normal(a.shape).astype(np.float32)
    y, (da, dbias) = run(fused, [a, bias, dy], compiled)
    composed_y, (composed_da, composed_dbias) = run(BiasThenActivation(name), [a, bias, dy], compiled)
    np.testing.assert_array_equal(y, composed_y)  # the same float operations
    np.testing.assert_array_equal(da, composed_da)
    exact_dbias = composed_da.astype(np.float64).sum(0)
    assert np.abs(dbias - exact_dbias).max() <= 1e-6 * np.abs(composed_da).sum(0).max()
    np.testing.assert_allclose(dbias, composed_dbias, rtol=1e-5, atol=1e-5 * np.abs(composed_dbias).max())


class ResidualOutput(nn.Cell):
    """BERT's output block after its product a: LayerNorm((a + bias)·mask + residual), fused or composed."""

    def __init__(self, kernel: bool, masked: bool):
        super().__init__()
        self.kernel, self.masked = kernel, masked
        self.fused = (F.CpuMaskedResidualLayerNorm if masked else F.CpuResidualLayerNorm)(1e-12)
        self.norm = F.CpuLayerNorm(1e-12)

    def construct(self, a, bias, mask, residual, weight, beta):
        if self.kernel:
            if self.masked:
                return self.fused(a, bias, mask, residual, weight, beta)[0]
            return self.fused(a, bias, residual, weight, beta)[0]
        h = ops.bias_add(a, bias)
        if self.masked:
            h = ops.mul(h, ops.stop_gradient(mask))
        return self.norm(ops.add(h, residual), weight, beta)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("compiled", [False, True])
def test_residual_layer_norm_is_the_composition_and_its_gradients_match_float64(masked, compiled):
    rng = np.random.default_rng(3)
    a = (rng.standard_normal((111, 48)) * 2).astype(np.float32)
    bias, weight, beta = (rng.standard_normal(48).astype(np.float32) for _ in range(3))
    mask = (rng.random(a.shape) >= 0.1).astype(np.float32) / np.float32(0.9) if masked else np.ones_like(a)
    residual = rng.standard_normal(a.shape).astype(np.float32)
    dy = rng.standard_normal(a.shape).astype(np.float32)
    inputs = [a, bias, mask, residual, weight, beta, dy]
    y, (da, dbias, _, dresidual, dweight, dbeta) = run(ResidualOutput(True, masked), inputs, compiled)
    composed_y, composed_grads = run(ResidualOutput(False, masked), inputs, compiled)
    np.testing.assert_array_equal(y, composed_y)  # the same float operations
    h = (a.astype(np.float64) + bias) * mask + residual
    rstd = 1 / np.sqrt(h.var(-1, keepdims=True) + 1e-12)
    normed = (h - h.mean(-1, keepdims=True)) * rstd
    g = dy * weight
    dh = rstd * (g - g.mean(-1, keepdims=True) - normed * (g * normed).mean(-1, keepdims=True))
    exact = [dh * mask, (dh * mask).sum(0), dh, (dy * normed).sum(0), dy.sum(0)]
    for mine, truth in zip([da, dbias, dresidual, dweight, dbeta], exact):
        assert np.abs(mine - truth).max() <= 1e-6 * np.abs(truth).max()
    for mine, theirs in zip([da, dbias, dresidual, dweight, dbeta], [composed_grads[i] for i in (0, 1, 3, 4, 5)]):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-5 * np.abs(theirs).max())


@pytest.mark.parametrize("transposed", [True, False])
@pytest.mark.parametrize("rows, inner, columns", [(300, 96, 40), (3, 70, 257), (1, 5, 1), (0, 8, 6), (4, 0, 6)])
@pytest.mark.parametrize("compiled", [False, True])
def test_matmul_with_and_without_bias_and_its_gradients_match_float64(transposed, rows, inner, columns, compiled):
    # many rows (bands of rows), few rows (bands of columns), a single element, and empty products
    rng = np.random.default_rng(rows + inner + columns)
    a = rng.standard_normal((rows, inner)).astype(np.float32)
    weight = rng.standard_normal((columns, inner) if transposed else (inner, columns)).astype(np.float32)
    bias = rng.standard_normal(columns).astype(np.float32)
    dy = rng.standard_normal((rows, columns)).astype(np.float32)
    product, with_bias = F.cpu_matmuls(transposed, device_kernels=False)
    assert F.cpu_matmuls(transposed, device_kernels=True) == (None, None)
    y, (da, dweight, dbias) = run(with_bias, [a, weight, bias, dy], compiled)
    bare, (bare_da, bare_dweight) = run(product, [a, weight, dy], compiled)
    w = weight.T.astype(np.float64) if transposed else weight.astype(np.float64)  # (inner, columns)
    layout = (lambda m: m.T) if transposed else (lambda m: m)  # (inner, columns) → the weight's layout
    exact = [a @ w + bias, dy @ w.T, layout(a.T.astype(np.float64) @ dy), dy.astype(np.float64).sum(0)]
    # bounds: float32 rounding of sums of |terms|
    scale = [np.abs(a) @ np.abs(w) + np.abs(bias), np.abs(dy) @ np.abs(w.T), layout(np.abs(a.T) @ np.abs(dy)),
             np.abs(dy).sum(0)]
    for mine, truth, size in zip([y, da, dweight, dbias], exact, scale):
        assert mine.shape == truth.shape and mine.dtype == np.float32
        assert np.all(np.abs(mine - truth) <= 1e-6 * (size + 1))
    np.testing.assert_array_equal(bare + bias, y)  # the bias added to the same product, as BiasAdd adds it
    np.testing.assert_array_equal(bare_da, da)
    np.testing.assert_array_equal(bare_dweight, dweight)


@pytest.mark.parametrize("compiled", [False, True])
def test_linear_layers_take_the_gemm_outside_training_and_matmul_in_it(compiled):
    from ms_ptuning.native.cells import Conv1D, Linear

    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 9, 24)).astype(np.float32)
    for layer in (Linear(24, 10), Conv1D(24, 10)):
        for parameter in layer.get_parameters():
            parameter.set_data(Tensor(rng.standard_normal(parameter.shape).astype(np.float32)))
        weight, bias = layer.weight.asnumpy().astype(np.float64), layer.bias.asnumpy()
        exact = x @ (weight if isinstance(layer, Conv1D) else weight.T) + bias
        outputs = {}
        for training in (False, True):
            layer.set_train(training)
            assert layer.cpu_kernel_for(Tensor(x)) is not training
            if compiled:
                with graph_mode():
                    outputs[training] = layer(Tensor(x)).asnumpy()
            else:
                outputs[training] = layer(Tensor(x)).asnumpy()
            assert outputs[training].shape == (2, 9, 10)
            np.testing.assert_allclose(outputs[training], exact, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(outputs[False], outputs[True], rtol=1e-6, atol=1e-6)


class RowsAttention(nn.Cell):
    """The CPU's attention kernels over rows (`training`: with dropout's mask on the probabilities), or the
    composition BERT's attention runs otherwise."""

    def __init__(self, kernel: bool, prefixed: bool, training: bool, scale: float):
        super().__init__()
        self.kernel, self.prefixed, self.training_kernel = kernel, prefixed, training
        plain, with_prefix, dropout, dropout_with_prefix = F.cpu_attentions(scale, device_kernels=False)
        self.attention = (dropout_with_prefix if prefixed else dropout) if training else \
            (with_prefix if prefixed else plain)
        self.scale = scale

    def construct(self, query, key, value, prefix_key, prefix_value, mask, keep):
        if not self.kernel:
            batch, heads = mask.shape[0], mask.shape[1]
            query, key, value = (F.split_heads(F.unflatten_rows(rows, batch), heads) for rows in (query, key, value))
            if self.prefixed:
                key, value = ops.concat((prefix_key, key), 2), ops.concat((prefix_value, value), 2)
            probs = ops.softmax(ops.add(ops.mul(ops.BatchMatMul(transpose_b=True)(query, key), self.scale), mask), -1)
            if self.training_kernel:
                probs = ops.mul(probs, ops.stop_gradient(keep))
            return F.flatten_rows(F.merge_heads(ops.BatchMatMul()(probs, value)))
        if self.training_kernel:
            if self.prefixed:
                return self.attention(query, key, value, prefix_key, prefix_value, mask, keep)[0]
            return self.attention(query, key, value, mask, keep)[0]
        if self.prefixed:
            return self.attention(query, key, value, prefix_key, prefix_value, mask)
        return self.attention(query, key, value, mask)


@pytest.mark.parametrize("prefixed", [False, True])
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("compiled", [False, True])
def test_attention_over_rows_and_its_gradients_match_float64_and_the_composition(prefixed, training, compiled):
    batch, heads, steps, size, prefix, scale = 3, 4, 7, 8, 5 if prefixed else 0, 8 ** -0.5
    rng = np.random.default_rng(6)
    query, key, value = (rng.standard_normal((batch * steps, heads * size)).astype(np.float32) for _ in range(3))
    # without a prefix the prefix inputs are unused (one row, not an empty tensor)
    prefix_key, prefix_value = (rng.standard_normal((batch, heads, max(prefix, 1), size)).astype(np.float32)
                                for _ in range(2))
    mask = np.zeros((batch, heads, steps, prefix + steps), np.float32)
    mask[0, :, :, -2:] = np.finfo(np.float32).min  # padding, as BERT's mask has it
    mask[1, :, :, prefix + 3:] = np.finfo(np.float32).min
    keep = (rng.random(mask.shape) >= 0.3).astype(np.float32) / np.float32(0.7) if training else np.ones_like(mask)
    dy = rng.standard_normal(query.shape).astype(np.float32)
    inputs = [query, key, value, prefix_key, prefix_value, mask, keep, dy]
    y, grads = run(RowsAttention(True, prefixed, training, scale), inputs, compiled)
    composed_y, composed_grads = run(RowsAttention(False, prefixed, training, scale), inputs, compiled)
    # float64: the composition's arithmetic
    split = [rows.astype(np.float64).reshape(batch, steps, heads, size).transpose(0, 2, 1, 3)
             for rows in (query, key, value)]
    q, k, v = split
    if prefixed:
        k, v = np.concatenate([prefix_key, k], 2), np.concatenate([prefix_value, v], 2)
    scores = q @ k.transpose(0, 1, 3, 2) * scale + mask
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    exact = ((probs * keep) @ v).transpose(0, 2, 1, 3).reshape(query.shape)
    assert y.shape == query.shape and y.dtype == np.float32
    assert np.abs(y - exact).max() <= 1e-6 * np.abs(exact).max()
    np.testing.assert_allclose(y, composed_y, rtol=1e-5, atol=1e-5 * np.abs(exact).max())
    used = [0, 1, 2, 3, 4] if prefixed else [0, 1, 2]  # q, k, v and the prefix
    for index in used:
        mine, theirs = grads[index], composed_grads[index]
        assert mine.shape == theirs.shape and np.abs(theirs).max() > 0
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-5 * np.abs(theirs).max())


class LayerNormInputs(nn.Cell):
    def __init__(self, kernel: bool):
        super().__init__()
        self.norm = F.CpuLayerNorm(1e-12) if kernel else None

    def construct(self, x, weight, bias):
        return self.norm(x, weight, bias) if self.norm is not None else F.layer_norm(x, weight, bias, 1e-12)


@pytest.mark.parametrize("compiled", [False, True])
def test_layer_norm_and_its_gradients_match_float64_and_the_composition(compiled):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((3, 37, 48)) * 3 + 1).astype(np.float32)  # 111 rows: blocks of 16 and a rest
    weight, bias = rng.standard_normal(48).astype(np.float32), rng.standard_normal(48).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    y, (dx, dweight, dbias) = run(LayerNormInputs(True), [x, weight, bias, dy], compiled)
    xd = x.astype(np.float64)
    rstd = 1 / np.sqrt(xd.var(-1, keepdims=True) + 1e-12)
    normed = (xd - xd.mean(-1, keepdims=True)) * rstd
    g = dy * weight
    exact = [normed * weight + bias,
             rstd * (g - g.mean(-1, keepdims=True) - normed * (g * normed).mean(-1, keepdims=True)),
             (dy * normed).sum((0, 1)), dy.sum((0, 1))]
    for mine, truth in zip([y, dx, dweight, dbias], exact):
        assert np.abs(mine - truth).max() <= 5e-7 * np.abs(truth).max()
    composed = run(LayerNormInputs(False), [x, weight, bias, dy], compiled)
    for mine, theirs in zip([y, dx, dweight, dbias], [composed[0], *composed[1]]):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-5 * np.abs(theirs).max())


class MaskedSoftmax(nn.Cell):
    def __init__(self, scale: float, kernel: bool):
        super().__init__()
        self.scale, self.softmax = scale, F.CpuSoftmax(scale) if kernel else F.Softmax()
        self.kernel = kernel

    def construct(self, scores, mask):
        if self.kernel:
            return self.softmax(scores, mask)
        return self.softmax(ops.add(ops.mul(scores, self.scale), mask))


@pytest.mark.parametrize("compiled", [False, True])
def test_attention_softmax_and_its_backward_match_float64_and_the_composition(compiled):
    rng = np.random.default_rng(1)
    scores = (rng.standard_normal((2, 3, 5, 19)) * 4).astype(np.float32)
    mask = np.zeros_like(scores)
    mask[0, :, :, -4:] = np.finfo(np.float32).min  # padding
    mask[1] = np.triu(np.full((5, 19), -np.inf, np.float32), 15)  # GPT-2's future keys
    dy = rng.standard_normal(scores.shape).astype(np.float32)
    scale = 0.125
    probs, (dscores, _) = run(MaskedSoftmax(scale, True), [scores, mask, dy], compiled)
    z = scores.astype(np.float64) * scale + mask
    e = np.exp(z - z.max(-1, keepdims=True))
    exact = e / e.sum(-1, keepdims=True)
    exact_grad = scale * exact * (dy - (exact * dy).sum(-1, keepdims=True))
    assert np.abs(probs - exact).max() <= 3e-7 and np.abs(dscores - exact_grad).max() <= 1e-6
    assert np.all(probs[1][..., 15:][np.isinf(mask[1][..., 15:])] == 0)
    composed, (composed_grad, _) = run(MaskedSoftmax(scale, False), [scores, mask, dy], compiled)
    np.testing.assert_allclose(probs, composed, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(dscores, composed_grad, rtol=1e-5, atol=1e-7)


def test_without_a_compiler_or_a_writable_cache_the_compositions_run(monkeypatch, tmp_path):
    from ms_ptuning import layers
    from ms_ptuning.native.cells import LayerNorm

    monkeypatch.setenv("CXX", "no-such-compiler")
    monkeypatch.setenv("MS_PTUNING_CACHE", str(tmp_path))  # nothing built there yet
    cpu_kernels.library.cache_clear()
    try:
        with pytest.warns(UserWarning, match="no C.. compiler .no-such-compiler. found"):
            assert cpu_kernels.library() is None
        assert isinstance(F.activation("gelu", False), F.Gelu) and isinstance(F.softmax(False, 0.5), F.Softmax)
        assert F.bias_activation("gelu", False) is None
        assert LayerNorm(8, 1e-5).cpu_kernel is None and not layers.Dropout(0.1).cpu_kernel
        cpu_kernels.library.cache_clear()
        monkeypatch.delenv("CXX")
        (tmp_path / "cpu_kernels").write_text("a file where the cache directory should be")
        with pytest.warns(UserWarning, match="cannot write the CPU kernels"):
            assert cpu_kernels.library() is None
    finally:
        monkeypatch.undo()
        cpu_kernels.library.cache_clear()
    assert cpu_kernels.available()
