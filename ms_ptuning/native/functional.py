"""The transformer arithmetic of the native backbones, in `mindspore.ops` only.

Only `ops` functions and primitives, never Tensor methods or operators: the same code then runs compiled
(GRAPH_MODE) and op by op in PyNative after `import mindnlp` (see `ms_ptuning/layers.py`). Each function
computes what the Hugging Face / torch module it replaces computes.

Written around what MindSpore 2.7's CPU kernels do when compiled (measured op by op; a test guards it):
an elementwise add/sub/mul that broadcasts a smaller operand, a Transpose, `ops.div` and the default
backward of softmax and erf each keep 1.3–4 output-sized buffers alive outside the memory pool for as long as
the graph exists, one set per call site: twelve BERT-base layers held ~10 GB that way. So every broadcast is
explicit (`ops.broadcast_to`, or BiasAdd on a 2-D view), heads are split and merged with split/stack and
unstack/concat instead of transposes, division by a constant is multiplication by its reciprocal, and softmax
and GELU carry their own backward (`Softmax`, `Gelu`, `GeluTanh`; on CPU GELU, LayerNorm and attention's
softmax are one C++ kernel each way, `CpuActivation`, `CpuLayerNorm`, `CpuSoftmax`, and GELU and LayerNorm also
take in the bias add, dropout and residual before them: `CpuBiasActivation`, `CpuResidualLayerNorm`; BERT's whole
attention is one, `CpuAttention`, and so are linear layers outside training, `CpuMatMul`). That is
the CPU's choice; with the devices' kernels (`device_kernels=True`, see `device/kernels.py`) the same functions
take fewer, fused kernels instead.
"""

import math

import numpy as np
from mindspore import Tensor, nn, ops
from mindspore import dtype as mstype

from ..device import cpu_kernels

FLOAT32_MIN = float(np.finfo(np.float32).min)  # torch.finfo(float32).min: Hugging Face's additive mask value

_MATMUL_NT = ops.MatMul(transpose_b=True)
_BIAS_ADD = ops.BiasAdd()
_BATCH_MATMUL_NT = ops.BatchMatMul(transpose_b=True)
_BATCH_MATMUL = ops.BatchMatMul()
_MEAN = ops.ReduceMean(keep_dims=True)
_SUM = ops.ReduceSum(keep_dims=True)
_CUMSUM_FROM_END = ops.CumSum(reverse=True)
_GELU_TANH = ops.GeLU()


def broadcast(small, like, device_kernels: bool = False):
    """`small` for an elementwise op with `like`: copied out to `like`'s shape so that the op does not broadcast
    (the CPU's choice, see above); as it is with the devices' kernels, where the op broadcasts it."""
    return small if device_kernels else ops.broadcast_to(small, like.shape)


def low_precision_product(matmul, a, b, compute_dtype):
    """`matmul(a, b)`, in `compute_dtype` (float16) when given, the product returned as float32: under mixed
    precision only MatMuls run in the low dtype (autocast's rule); the rest of the backbone stays float32."""
    if compute_dtype is None:
        return matmul(a, b)
    return ops.cast(matmul(ops.cast(a, compute_dtype), ops.cast(b, compute_dtype)), mstype.float32)


def flatten_rows(x):
    """(B, T, H) → (B·T, H): the encoders' activations between attentions, rows of tokens, so that linear
    layers, LayerNorm and dropout take them without a reshape kernel on each side."""
    return ops.reshape(x, (-1, x.shape[-1]))


def unflatten_rows(rows, batch: int):
    """(B·T, H) → (B, T, H)."""
    return ops.reshape(rows, (batch, -1, rows.shape[-1]))


def linear(x, weight, bias, compute_dtype=None):
    """torch's nn.Linear: x (..., in) · weight (out, in)ᵀ + bias (out,) → (..., out), one 2-D MatMul."""
    return bias_added(_MATMUL_NT, x, weight, bias, weight.shape[0], compute_dtype)


def bias_added(matmul, x, weight, bias, out_features: int, compute_dtype):
    """matmul(x, weight) + bias over the last axis of x; rows (a 2-D x, the encoders' usual case) need no
    reshape around the product."""
    rows = x if len(x.shape) == 2 else flatten_rows(x)
    product = low_precision_product(matmul, rows, weight, compute_dtype)
    y = _BIAS_ADD(product, bias if compute_dtype is None else ops.cast(bias, mstype.float32))
    return y if len(x.shape) == 2 else ops.reshape(y, x.shape[:-1] + (out_features,))


def layer_norm(x, weight, bias, eps: float, kernel: bool = False):
    """torch's LayerNorm over the last axis (biased variance): (x − mean) / √(var + eps) · weight + bias.

    `kernel`: MindSpore's LayerNorm kernel and its registered backward (LayerNormGrad), two launches per call
    (`ops.LayerNorm`, not `ops.layer_norm`, whose LayerNormExt kernel is missing on CPU). Otherwise composed of
    elementwise ops: ~14 launches forward and ~25 backward, but on CPU the kernel's backward is the slower one
    (cells.LayerNorm chooses by device)."""
    if kernel:
        return ops.LayerNorm(begin_norm_axis=-1, begin_params_axis=-1, epsilon=eps)(x, weight, bias)[0]
    flat = ops.reshape(x, (-1, x.shape[-1]))  # (N, H)
    centred = ops.sub(flat, broadcast(_MEAN(flat, -1), flat))
    variance = _MEAN(ops.square(centred), -1)  # (N, 1)
    normed = ops.mul(centred, broadcast(ops.rsqrt(ops.add(variance, eps)), flat))
    return ops.reshape(_BIAS_ADD(ops.mul(normed, broadcast(weight, flat)), bias), x.shape)


class CpuLayerNorm(nn.Cell):
    """`layer_norm` as ms_ptuning's CPU kernels (device/cpu_kernels.py), one pass over the rows each way, float32.
    Weight and bias are inputs, not Parameters, so that the backward returns their gradients."""

    def __init__(self, eps: float):
        super().__init__()
        self.eps = eps
        self.forward, self.backward = cpu_kernels.layer_norm_ops()

    def construct(self, x, weight, bias):
        return self.forward(x, weight, bias, Tensor([self.eps], mstype.float32))

    def bprop(self, x, weight, bias, out, dout):
        return self.backward(x, weight, dout, Tensor([self.eps], mstype.float32))


class CpuResidualLayerNorm(nn.Cell):
    """LayerNorm((a + bias) + residual), BERT's output block without dropout (a: the dense layer's product
    without its bias), as one CPU kernel each way (device/cpu_kernels.py): the same float operations as BiasAdd,
    Add and `CpuLayerNorm`. Float32. → (the normed rows, the sum h they normalise: the backward's input)."""

    def __init__(self, eps: float):
        super().__init__()
        self.eps = eps
        self.forward, self.backward = cpu_kernels.residual_layer_norm_ops()

    def construct(self, a, bias, residual, weight, beta):
        return self.forward(a, bias, residual, weight, beta, Tensor([self.eps], mstype.float32))

    def bprop(self, a, bias, residual, weight, beta, out, dout):
        return self.backward(out[1], weight, dout[0], Tensor([self.eps], mstype.float32))


class CpuMaskedResidualLayerNorm(CpuResidualLayerNorm):
    """LayerNorm((a + bias) · mask + residual): `CpuResidualLayerNorm` with dropout's mask (0 or 1/(1 − p))."""

    def construct(self, a, bias, mask, residual, weight, beta):
        return self.forward(a, bias, mask, residual, weight, beta, Tensor([self.eps], mstype.float32))

    def bprop(self, a, bias, mask, residual, weight, beta, out, dout):
        da, dbias, dresidual, dweight, dbeta = self.backward(out[1], mask, weight, dout[0],
                                                             Tensor([self.eps], mstype.float32))
        return da, dbias, ops.zeros_like(mask), dresidual, dweight, dbeta


class CpuMatMul(nn.Cell):
    """a (M, K) · weight, the weight (N, K) used transposed (`transpose_b`, torch's Linear) or (K, N) (GPT-2's
    Conv1D), as ms_ptuning's CPU kernel (device/cpu_kernels.py: oneDNN's sgemm, which MindSpore's MatMul runs, on
    bands of the output). Float32. The backward's input and weight gradients are a kernel each."""

    def __init__(self, transpose_b: bool):
        super().__init__()
        kernels = cpu_kernels.matmul_ops()
        self.transpose_b = transpose_b
        self.forward = kernels["NT" if transpose_b else "NN"]
        self.input_grad = kernels["NN" if transpose_b else "NT"]  # dy · weight, or dy · weightᵀ
        self.weight_grad = kernels["TN"]  # dyᵀ · a, or aᵀ · dy

    def construct(self, a, weight):
        return self.forward(a, weight)

    def gradients(self, a, weight, dout):
        dweight = self.weight_grad(dout, a) if self.transpose_b else self.weight_grad(a, dout)
        return self.input_grad(dout, weight), dweight

    def bprop(self, a, weight, out, dout):
        return self.gradients(a, weight, dout)


class CpuMatMulBias(CpuMatMul):
    """`CpuMatMul` + bias (N,) over the rows, added in the product's kernel (the same float operations as
    BiasAdd); the bias's gradient is the output gradient's column sums in a fixed order."""

    def __init__(self, transpose_b: bool):
        super().__init__(transpose_b)
        self.bias_grad = cpu_kernels.matmul_ops()["column_sums"]

    def construct(self, a, weight, bias):
        return self.forward(a, weight, bias)

    def bprop(self, a, weight, bias, out, dout):
        da, dweight = self.gradients(a, weight, dout)
        return da, dweight, self.bias_grad(dout)


def cpu_gemm_kernels_chosen(device_kernels: bool) -> bool:
    """Whether the CPU's kernels that call oneDNN's GEMM (`CpuMatMul`, `CpuAttention`) are the choice: not with
    the devices' kernels, and only where the CPU's kernels could be built and MindSpore's oneDNN has the GEMM."""
    return not device_kernels and cpu_kernels.available() and cpu_kernels.onednn_sgemm_found()


def cpu_matmuls(transpose_b: bool, device_kernels: bool):
    """(`CpuMatMul`, `CpuMatMulBias`) for a linear layer where `cpu_gemm_kernels_chosen`; else (None, None):
    MatMul and BiasAdd."""
    if not cpu_gemm_kernels_chosen(device_kernels):
        return None, None
    return CpuMatMul(transpose_b), CpuMatMulBias(transpose_b)


class Softmax(nn.Cell):
    """Softmax over the last axis with its backward written out without broadcasting: y · (dy − Σ y·dy)."""

    def construct(self, x):
        return ops.softmax(x, -1)

    def bprop(self, x, out, dout):
        return (ops.mul(out, ops.sub(dout, broadcast(_SUM(ops.mul(out, dout), -1), dout))),)


class Gelu(nn.Cell):
    """Hugging Face "gelu" (torch's exact erf GELU), x · ½(1 + erf(x/√2)); derivative ½(1 + erf(x/√2)) + x·φ(x)."""

    def construct(self, x):
        return ops.mul(x, ops.mul(ops.add(ops.erf(ops.mul(x, 1.0 / math.sqrt(2.0))), 1.0), 0.5))

    def bprop(self, x, out, dout):
        cdf = ops.mul(ops.add(ops.erf(ops.mul(x, 1.0 / math.sqrt(2.0))), 1.0), 0.5)
        density = ops.mul(ops.exp(ops.mul(ops.square(x), -0.5)), 1.0 / math.sqrt(2.0 * math.pi))
        return (ops.mul(dout, ops.add(cdf, ops.mul(x, density))),)


class GeluTanh(nn.Cell):
    """Hugging Face "gelu_new" (GPT-2) / "gelu_pytorch_tanh": ½x(1 + tanh(√(2/π)(x + 0.044715x³)))."""

    def construct(self, x):
        return ops.mul(ops.mul(x, 0.5), ops.add(ops.tanh(self.inner(x)), 1.0))

    def inner(self, x):
        return ops.mul(ops.add(x, ops.mul(ops.mul(ops.square(x), x), 0.044715)), math.sqrt(2.0 / math.pi))

    def bprop(self, x, out, dout):
        tanh = ops.tanh(self.inner(x))
        slope = ops.mul(ops.add(ops.mul(ops.square(x), 3 * 0.044715), 1.0), math.sqrt(2.0 / math.pi))
        inner_grad = ops.mul(ops.mul(ops.sub(1.0, ops.square(tanh)), slope), ops.mul(x, 0.5))
        return (ops.mul(dout, ops.add(ops.mul(ops.add(tanh, 1.0), 0.5), inner_grad)),)


class SoftmaxKernel(nn.Cell):
    """Softmax over the last axis with MindSpore's registered backward (4 kernels, its Sub broadcasting)."""

    def construct(self, x):
        return ops.softmax(x, -1)


class GeluTanhKernel(nn.Cell):
    """`GeluTanh` as MindSpore's GeLU kernel, which computes the tanh form (within 5e-7 of it on CPU), and its
    registered backward (GeLUGrad): 2 launches instead of ~15."""

    def construct(self, x):
        return _GELU_TANH(x)


class CpuActivation(nn.Cell):
    """`Gelu` or `GeluTanh` as ms_ptuning's CPU kernels (device/cpu_kernels.py): one pass forward, one backward,
    in float32 (a float16 input is computed in float32 and rounded once), instead of ~6 and ~15 kernels."""

    def __init__(self, kernel: str):
        super().__init__()
        self.forward, self.backward = cpu_kernels.activation_ops(kernel)

    def construct(self, x):
        if x.dtype == mstype.float32:
            return self.forward(x)
        return ops.cast(self.forward(ops.cast(x, mstype.float32)), x.dtype)

    def bprop(self, x, out, dout):
        if x.dtype == mstype.float32:
            return (self.backward(x, dout),)
        return (ops.cast(self.backward(ops.cast(x, mstype.float32), ops.cast(dout, mstype.float32)), x.dtype),)


class CpuBiasActivation(nn.Cell):
    """`CpuActivation` of a + bias (a linear layer's product without its bias, (N, H) rows, and the bias): the
    BiasAdd and, backward, its gradient's sum in the activation's kernels. Float32; the same float operations as
    BiasAdd and `CpuActivation`."""

    def __init__(self, kernel: str):
        super().__init__()
        self.forward, self.backward = cpu_kernels.bias_activation_ops(kernel)

    def construct(self, a, bias):
        return self.forward(a, bias)

    def bprop(self, a, bias, out, dout):
        return self.backward(a, bias, dout)


class Relu(nn.Cell):
    def construct(self, x):
        return ops.relu(x)


ACTIVATIONS = {"gelu": Gelu, "gelu_new": GeluTanh, "gelu_pytorch_tanh": GeluTanh, "relu": Relu}
DEVICE_ACTIVATIONS = {**ACTIVATIONS, "gelu_new": GeluTanhKernel, "gelu_pytorch_tanh": GeluTanhKernel}
CPU_KERNEL_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}


def cpu_kernel_activation(name: str, device_kernels: bool) -> str | None:
    """The CPU kernel ("gelu" or "gelu_tanh") computing Hugging Face's activation `name` where that is the
    choice: not with the devices' kernels, and only where the CPU's kernels could be built; else None."""
    if device_kernels or name not in CPU_KERNEL_ACTIVATIONS or not cpu_kernels.available():
        return None
    return CPU_KERNEL_ACTIVATIONS[name]


def activation(name: str, device_kernels: bool) -> nn.Cell:
    """Hugging Face's activation `name` as a Cell: with the devices' kernels, or on CPU its own kernel where it
    has one (and could build it), else the composition."""
    if device_kernels:
        return DEVICE_ACTIVATIONS[name]()
    kernel = cpu_kernel_activation(name, device_kernels)
    return CpuActivation(kernel) if kernel is not None else ACTIVATIONS[name]()


def bias_activation(name: str, device_kernels: bool):
    """activation(a + bias) as one CPU kernel (`CpuBiasActivation`) where `activation` chooses the CPU's kernel;
    otherwise None (the linear layer adds its bias, then the activation runs)."""
    kernel = cpu_kernel_activation(name, device_kernels)
    return CpuBiasActivation(kernel) if kernel is not None else None


class CpuSoftmax(nn.Cell):
    """Attention's softmax(scores · scale + mask) as ms_ptuning's CPU kernels (device/cpu_kernels.py), one pass
    each way instead of 3 and 6 kernels; `attend` hands it the unscaled scores and the mask (same shape, float32).
    `plain`: the composed softmax, for scores without a mask."""

    scales_and_masks = True

    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale
        self.forward, self.backward = cpu_kernels.softmax_ops()
        self.plain = Softmax()

    def construct(self, scores, mask):
        return self.forward(scores, mask, Tensor([self.scale], mstype.float32))

    def bprop(self, scores, mask, out, dout):
        return self.backward(out, dout, Tensor([self.scale], mstype.float32)), ops.zeros_like(mask)


class CpuAttention(nn.Cell):
    """Attention over the projections' rows as one CPU kernel (device/cpu_kernels.py), outside training: query
    (B·T, H), key, value (B·Tk, H) rows, mask (B, heads, T, Tk) → context rows (B·T, H), softmax(q kᵀ · scale +
    mask) v per batch row and head, each head read where it lies in the rows. Float32. What `split_heads`,
    `attend` and `merge_heads` compute, in one launch instead of ~11. Its gradient (eval-mode differentiation:
    the parity tests) is the composition's (`attention`)."""

    prefixed = False

    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale
        self.forward, self.train_forward, self.backward = cpu_kernels.attention_ops(self.prefixed)
        self.grad = ops.GradOperation(get_all=True, sens_param=True)

    def construct(self, query, key, value, mask):
        return self.forward(query, key, value, mask, Tensor([self.scale], mstype.float32))

    def composed(self, query, key, value, mask):
        return self.attention(query, key, value, mask, None, None)

    def attention(self, query, key, value, mask, prefix_key, prefix_value):
        batch, heads = mask.shape[0], mask.shape[1]
        query, key, value = (split_heads(unflatten_rows(rows, batch), heads) for rows in (query, key, value))
        if prefix_key is not None:
            key, value = ops.concat((prefix_key, key), 2), ops.concat((prefix_value, value), 2)
        probs = ops.softmax(ops.add(ops.mul(_BATCH_MATMUL_NT(query, key), self.scale), mask), -1)
        return flatten_rows(merge_heads(_BATCH_MATMUL(probs, value)))

    def bprop(self, query, key, value, mask, out, dout):
        return self.grad(self.composed)(query, key, value, mask, dout)


class CpuPrefixAttention(CpuAttention):
    """`CpuAttention` with a layer's prefix keys and values (B, heads, P, d) in front of the rows' own; mask
    (B, heads, T, P + Tk)."""

    prefixed = True

    def construct(self, query, key, value, prefix_key, prefix_value, mask):
        return self.forward(query, key, value, prefix_key, prefix_value, mask, Tensor([self.scale], mstype.float32))

    def composed(self, query, key, value, prefix_key, prefix_value, mask):
        return self.attention(query, key, value, mask, prefix_key, prefix_value)

    def bprop(self, query, key, value, prefix_key, prefix_value, mask, out, dout):
        return self.grad(self.composed)(query, key, value, prefix_key, prefix_value, mask, dout)


class CpuTrainingAttention(CpuAttention):
    """`CpuAttention` in training, dropout's mask `keep` (0 or 1/(1 − p), like `mask`) on the probabilities:
    → (context rows, the probabilities before dropout, which the backward kernel takes)."""

    def construct(self, query, key, value, mask, keep):
        return self.train_forward(query, key, value, mask, keep, Tensor([self.scale], mstype.float32))

    def bprop(self, query, key, value, mask, keep, out, dout):
        grads = self.backward(query, key, value, out[1], keep, dout[0], Tensor([self.scale], mstype.float32))
        return grads + (ops.zeros_like(mask), ops.zeros_like(keep))


class CpuPrefixTrainingAttention(CpuAttention):
    """`CpuTrainingAttention` with a layer's prefix keys and values, as `CpuPrefixAttention`."""

    prefixed = True

    def construct(self, query, key, value, prefix_key, prefix_value, mask, keep):
        return self.train_forward(query, key, value, prefix_key, prefix_value, mask, keep,
                                  Tensor([self.scale], mstype.float32))

    def bprop(self, query, key, value, prefix_key, prefix_value, mask, keep, out, dout):
        grads = self.backward(query, key, value, prefix_key, prefix_value, out[1], keep, dout[0],
                              Tensor([self.scale], mstype.float32))
        return grads + (ops.zeros_like(mask), ops.zeros_like(keep))


def cpu_attentions(scale: float, device_kernels: bool) -> tuple:
    """(`CpuAttention`, `CpuPrefixAttention`, `CpuTrainingAttention`, `CpuPrefixTrainingAttention`) where
    `cpu_gemm_kernels_chosen`; else four Nones."""
    if not cpu_gemm_kernels_chosen(device_kernels):
        return None, None, None, None
    return (CpuAttention(scale), CpuPrefixAttention(scale), CpuTrainingAttention(scale),
            CpuPrefixTrainingAttention(scale))


def softmax(device_kernels: bool, scale: float) -> nn.Cell:
    """Attention's softmax over the last axis as a Cell: the devices' kernels, the CPU's kernel (which also applies
    `scale` and the mask, see `attend`) where it could be built, or the CPU's composed backward."""
    if device_kernels:
        return SoftmaxKernel()
    return CpuSoftmax(scale) if cpu_kernels.available() else Softmax()


def split_heads(x, num_heads: int, device_kernels: bool = False):
    """(B, T, H) → (B, heads, T, H / heads): with the devices' kernels a reshape and a transpose, on CPU
    split/stack (no transpose, see above)."""
    if device_kernels:
        batch, steps, hidden = x.shape
        return ops.transpose(ops.reshape(x, (batch, steps, num_heads, hidden // num_heads)), (0, 2, 1, 3))
    return ops.stack(ops.split(x, x.shape[-1] // num_heads, 2), 1)


def split_qkv_heads(rows, batch: int, num_heads: int, device_kernels: bool = False):
    """One product's (B·T, 3H) rows, query | key | value side by side → query, key, value, each
    (B, heads, T, H / heads): with the devices' kernels one reshape, one transpose and one unstack for all three."""
    hidden = rows.shape[-1] // 3
    if device_kernels:
        heads = ops.reshape(rows, (batch, -1, 3, num_heads, hidden // num_heads))  # (B, T, 3, heads, d)
        return ops.unstack(ops.transpose(heads, (2, 0, 3, 1, 4)), 0)
    return tuple(split_heads(part, num_heads) for part in ops.split(unflatten_rows(rows, batch), hidden, 2))


def merge_heads(x, device_kernels: bool = False):
    """(B, heads, T, head_dim) → (B, T, heads · head_dim): with the devices' kernels a transpose and a reshape,
    on CPU unstack/concat."""
    if device_kernels:
        batch, heads, steps, size = x.shape
        return ops.reshape(ops.transpose(x, (0, 2, 1, 3)), (batch, steps, heads * size))
    return ops.concat(ops.unstack(x, 1), 2)


def attend(query, key, value, additive_mask, scale: float, softmax, dropout, compute_dtype=None, dropout_mask=None):
    """softmax(q kᵀ · scale + mask) v with dropout on the probabilities, as Hugging Face's eager attention
    (which divides by 1/scale: the same up to one rounding). With `compute_dtype` the two products run in it,
    the mask and softmax in float32. `dropout_mask`: the dropout's mask if computed beforehand.

    query (B, heads, T, d), key/value (B, heads, S, d), additive_mask (B, heads, T, S) or None → (B, heads, T, d).
    `softmax` from `softmax()`: the CPU's kernel (`CpuSoftmax`) takes the unscaled scores and the mask itself."""
    scores = low_precision_product(_BATCH_MATMUL_NT, query, key, compute_dtype)
    fused = getattr(softmax, "scales_and_masks", False)
    if fused and additive_mask is not None and additive_mask.shape == scores.shape:
        probs = softmax(scores, additive_mask)
    else:
        scores = ops.mul(scores, scale)
        if additive_mask is not None:
            scores = ops.add(scores, additive_mask)
        probs = softmax.plain(scores) if fused else softmax(scores)
    return low_precision_product(_BATCH_MATMUL, dropout(probs, dropout_mask), value, compute_dtype)


def padding_mask(attention_mask, num_heads: int, query_length: int, device_kernels: bool = False):
    """Hugging Face's extended encoder mask, (B, S) of 1/0 → (B, heads, T, S) of 0 / float32 min; with the
    devices' kernels (B, 1, 1, S), which the scores' add broadcasts."""
    keep = ops.cast(ops.expand_dims(ops.expand_dims(attention_mask, 1), 1), mstype.float32)  # (B, 1, 1, S)
    additive = ops.mul(ops.sub(1.0, keep), FLOAT32_MIN)
    if device_kernels:
        return additive
    batch, total = attention_mask.shape
    return ops.broadcast_to(additive, (batch, num_heads, query_length, total))


def causal_padding_mask(attention_mask, num_heads: int, query_length: int, device_kernels: bool = False):
    """GPT-2's eager masks folded into one additive (B, heads, T, S) mask.

    Query i (the last T of S positions) may see keys j ≤ S − T + i: earlier positions, a prefix or a cache,
    are visible to every query. Hugging Face masks a future key twice (its causal `where` puts float32 min
    there and its 4-D mask adds min again: −inf) and a visible padding key once (score + min), so a query
    that sees only padding spreads its attention evenly over the keys it may see. −inf for the future plus
    min for padding reproduces both. With the devices' kernels (B, 1, T, S), which the scores' add broadcasts."""
    batch, total = attention_mask.shape
    visible = ops.tril(ops.ones((query_length, total), mstype.float32), total - query_length)  # (T, S) 1/0
    causal = ops.masked_fill(ops.zeros((query_length, total), mstype.float32), ops.equal(visible, 0.0),
                             float("-inf"))
    return _causal_plus_padding(causal, attention_mask, num_heads, device_kernels)


def static_cache_mask(attention_mask, slot, num_heads: int, device_kernels: bool = False):
    """The additive mask of one query against a fixed-size cache: (B, S) 1/0 and the query's one-hot slot
    (S,) → (B, heads, 1, S) (devices' kernels: (B, 1, 1, S)). Slots after the query's are −inf (they do not
    exist for Hugging Face), visible padding float32 min, as in `causal_padding_mask`."""
    total = attention_mask.shape[1]
    reached = _CUMSUM_FROM_END(ops.cast(slot, mstype.float32), 0)  # (S,): 1 up to the query's slot
    causal = ops.masked_fill(ops.zeros((1, total), mstype.float32), ops.equal(ops.expand_dims(reached, 0), 0.0),
                             float("-inf"))
    return _causal_plus_padding(causal, attention_mask, num_heads, device_kernels)


def _causal_plus_padding(causal, attention_mask, num_heads: int, device_kernels: bool):
    """causal (T, S) of 0 / −inf plus the padding mask → (B, heads, T, S), or (B, 1, T, S) with the devices'
    kernels (no explicit broadcast)."""
    padding = padding_mask(attention_mask, num_heads, causal.shape[0], device_kernels)
    return ops.add(broadcast(causal, padding, device_kernels), padding)
