"""Minimal MindSpore layers with PyTorch parameter names and layouts.

Only `mindspore.ops` functions are used inside `construct`, never Tensor methods, operators or indexing
(`x.reshape`, `x + y`, `x[:, t]`): after `import mindnlp` those are mindtorch's and require a mindtorch
device on the tensor, which tensors computed by `mindspore.ops` do not carry. Parameter names (`weight`, `bias`, `weight_ih_l0`, ...) equal torch's so one
safetensors file loads into either implementation without a name map.
"""

import itertools
import math

import mindspore
import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from .device.jit import function_jit_level


def _uniform(shape, bound, rng):
    return Tensor(rng.uniform(-bound, bound, size=shape).astype(np.float32))


def init_rng() -> np.random.Generator:
    """Parameter initialisation draws from numpy's global state, which `seed_everything` fixes."""
    return np.random.default_rng(np.random.randint(0, 2**31 - 1))


class Embedding(nn.Cell):
    """Lookup table: (num, dim); torch's init N(0, 1), or N(0, std) (Hugging Face's `_init_weights`)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, std: float = 1.0):
        super().__init__()
        rng = init_rng()
        self.weight = Parameter(Tensor((rng.standard_normal((num_embeddings, embedding_dim)) * std).astype(np.float32)),
                                name="weight")

    def construct(self, indices):
        return ops.gather(self.weight, indices, 0)


class Linear(nn.Cell):
    """y = x Wᵀ + b with W of shape (out, in). Init: torch's default uniform, or with `std` Hugging Face's
    `_init_weights` (W ~ N(0, std), b = 0), which THUDM's P-tuning v2 modules get from `from_pretrained`."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, std: float | None = None):
        super().__init__()
        rng = init_rng()
        if std is None:
            bound = 1.0 / math.sqrt(in_features)
            weight, bias_value = _uniform((out_features, in_features), bound, rng), _uniform((out_features,), bound, rng)
        else:
            weight = Tensor((rng.standard_normal((out_features, in_features)) * std).astype(np.float32))
            bias_value = Tensor(np.zeros(out_features, dtype=np.float32))
        self.weight = Parameter(weight, name="weight")
        self.bias = Parameter(bias_value, name="bias") if bias else None

    def construct(self, x):
        y = ops.matmul(x, ops.transpose(self.weight, (1, 0)))
        if self.bias is not None:
            y = ops.add(y, self.bias)
        return y


@mindspore.jit_class
class DropoutKey:
    """(run seed, step, data-parallel worker) of the step being computed: every `Dropout` mask is a pure
    function of it and of the layer's site number.

    A Parameter, not a Python value, so that a compiled graph reads it when it runs rather than when it was
    compiled: a train-step graph assigns it from its own input before the forward pass (`assign`), eager
    code sets it before each step (`set_dropout_key`). A jit_class, so that graphs may read it without it
    becoming a weight of every Cell that uses it.
    """

    def __init__(self):
        self.value = Parameter(Tensor(np.zeros(3, np.int64)), name="dropout_key", requires_grad=False)


DROPOUT_KEY = DropoutKey()
_dropout_sites = itertools.count()


def set_dropout_key(seed: int, step: int, worker: int = 0) -> None:
    """Key the masks of the next forward passes run op by op (compiled steps assign it in-graph)."""
    DROPOUT_KEY.value.set_data(Tensor(np.array([seed, step, worker], np.int64)))


def reset_dropout_sites() -> None:
    """Number the Dropouts built from now on from 0 again (`seed_everything` calls it): a model built the
    same way after the same seeding gets the same site numbers, hence the same masks, as its weights."""
    global _dropout_sites
    _dropout_sites = itertools.count()


def keep_mask_function(p: float, site: int):
    """numpy function (input, key) → the input's inverted-dropout mask: 0 with probability p, else 1/(1-p).

    Drawn on the host from a bit generator seeded by (key, site), so equal keys give equal masks in a
    compiled graph and op by op alike, and a resumed run replays the masks of the run it continues. MindSpore's
    CPU random kernels cannot do this: those taking a seed as an input (DropoutExt, RandLikeExt, UniformExt,
    BernoulliExt) have no CPU kernel in 2.7, and those seeded by attributes (Dropout, UniformReal) keep their
    state between launches of a compiled graph. A unit is dropped when a raw 32-bit draw is below p·2³²
    (p exact to 2⁻³²); raw draws cost a third of numpy's float32 uniforms.
    """
    scale = np.float32(1.0 / (1.0 - p))
    threshold = np.uint32(min(round(p * 2**32), 2**32 - 1))

    def keep_mask(x, key):
        bits = np.random.SFC64(np.random.SeedSequence([int(k) % 2**64 for k in key] + [site]))
        draws = bits.random_raw((x.size + 1) // 2).view(np.uint32)[:x.size]
        return ((draws >= threshold) * scale).astype(x.dtype, copy=False).reshape(x.shape)

    return keep_mask


def _like_input(x_shape_or_dtype, key_shape_or_dtype):
    return x_shape_or_dtype  # the mask has the input's shape and dtype


class Dropout(nn.Cell):
    """Inverted dropout, active only in training mode (`set_train(True)`), with masks a pure function of
    (`DROPOUT_KEY`, site), see `keep_mask_function`. Each instance is one site (numbered as built), so a
    Dropout called twice in one step applies the same mask to same-shaped inputs."""

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.site = next(_dropout_sites)
        # a host (CPU) op on every device target: on GPU/Ascend the graph runs it heterogeneously (untested here)
        self.keep_mask = ops.Custom(keep_mask_function(p, self.site), out_shape=_like_input, out_dtype=_like_input,
                                    func_type="pyfunc").set_device("CPU")

    def construct(self, x):
        if not self.training or self.p == 0.0:
            return x
        return ops.mul(x, ops.stop_gradient(self.keep_mask(x, DROPOUT_KEY.value)))


def lstm_cell(input_gates, h, c, w_hh_t):
    """One LSTM step: (batch, 4·hidden) input gates, (batch, hidden) h and c → the next h and c."""
    gates = ops.add(input_gates, ops.matmul(h, w_hh_t))
    i, f, g, o = ops.split(gates, h.shape[-1], axis=-1)
    c = ops.add(ops.mul(ops.sigmoid(f), c), ops.mul(ops.sigmoid(i), ops.tanh(g)))
    h = ops.mul(ops.sigmoid(o), ops.tanh(c))
    return h, c


# One compiled graph per step instead of ten dispatched ops: a 16×768 2-layer biLSTM forward+backward takes
# 0.83 s instead of 2.6 s. Compiling the whole unrolled loop would be faster still (0.35 s) but its graph
# costs ~900 MB of memory; this one ~100 MB. One per jit level `mindspore.jit` takes (device/jit.py).
compiled_lstm_cells = {level: mindspore.jit(lstm_cell, jit_level=level) for level in ("O0", "O1")}


class LSTM(nn.Cell):
    """Batch-first multi-layer (bi)LSTM with torch's gate order (i, f, g, o) and parameter names.

    Written with plain ops rather than `mindspore.nn.LSTM`: the latter's internal tensors trip mindtorch's
    device checks once mindnlp is imported, and its parameters do not map one-to-one onto torch's.
    Prompt sequences are a few dozen steps at most: the loop is unrolled, each step one compiled graph
    (`compiled_steps`; False runs it op by op).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bidirectional: bool = False):
        super().__init__()
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.directions = ("", "_reverse") if bidirectional else ("",)
        self.compiled_steps = True
        self.compiled_cell = compiled_lstm_cells[function_jit_level()]  # the level when the model is built
        rng = init_rng()
        bound = 1.0 / math.sqrt(hidden_size)
        for layer in range(num_layers):
            layer_in = input_size if layer == 0 else hidden_size * len(self.directions)
            for suffix in self.directions:
                for name, shape in (("weight_ih", (4 * hidden_size, layer_in)),
                                    ("weight_hh", (4 * hidden_size, hidden_size)),
                                    ("bias_ih", (4 * hidden_size,)),
                                    ("bias_hh", (4 * hidden_size,))):
                    full = f"{name}_l{layer}{suffix}"
                    setattr(self, full, Parameter(_uniform(shape, bound, rng), name=full))

    def _run_direction(self, x, layer: int, suffix: str, reverse: bool):
        # x: (batch, steps, features) -> (batch, steps, hidden)
        w_ih = getattr(self, f"weight_ih_l{layer}{suffix}")
        w_hh = getattr(self, f"weight_hh_l{layer}{suffix}")
        bias = ops.add(getattr(self, f"bias_ih_l{layer}{suffix}"), getattr(self, f"bias_hh_l{layer}{suffix}"))
        input_gates = ops.add(ops.matmul(x, ops.transpose(w_ih, (1, 0))), bias)  # (batch, steps, 4·hidden)
        step_gates = ops.unstack(input_gates, axis=1)
        w_hh_t = ops.transpose(w_hh, (1, 0))
        h = ops.zeros((x.shape[0], self.hidden_size), x.dtype)
        c = ops.zeros((x.shape[0], self.hidden_size), x.dtype)
        outputs = [None] * len(step_gates)
        order = range(len(step_gates) - 1, -1, -1) if reverse else range(len(step_gates))
        cell = self.compiled_cell if self.compiled_steps else lstm_cell
        for t in order:
            h, c = cell(step_gates[t], h, c, w_hh_t)
            outputs[t] = h
        return ops.stack(outputs, axis=1)

    def construct(self, x):
        for layer in range(self.num_layers):
            x = ops.cat([self._run_direction(x, layer, suffix, reverse=bool(suffix)) for suffix in self.directions],
                        axis=-1)
        return x



class LayerNorm(nn.Cell):
    """Layer normalisation over the last axis with torch's `weight`/`bias` names (init ones/zeros).

    The `ops.LayerNorm` primitive, not `ops.layer_norm`: the latter's LayerNormExt kernel is missing on CPU.
    """

    def __init__(self, hidden_size: int, eps: float = 1e-12):
        super().__init__()
        self.norm = ops.LayerNorm(begin_norm_axis=-1, begin_params_axis=-1, epsilon=eps)
        self.weight = Parameter(Tensor(np.ones(hidden_size, dtype=np.float32)), name="weight")
        self.bias = Parameter(Tensor(np.zeros(hidden_size, dtype=np.float32)), name="bias")

    def construct(self, x):
        return self.norm(x, self.weight, self.bias)[0]
