"""Minimal MindSpore layers with PyTorch parameter names and layouts.

Only `mindspore.ops` functions are used inside `construct`, never Tensor methods, operators or indexing
(`x.reshape`, `x + y`, `x[:, t]`): after `import mindnlp` those are mindtorch's and require a mindtorch
device on the tensor, which tensors computed by `mindspore.ops` do not carry. Parameter names (`weight`, `bias`, `weight_ih_l0`, ...) equal torch's so one
safetensors file loads into either implementation without a name map.
"""

import functools
import itertools
import math

import mindspore
import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore.ops import constexpr

from .device import cpu_kernels
from .device.jit import function_jit_level
from .device.kernels import device_kernels


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
    """The step being computed, (run seed, step, data-parallel worker), as the three int32 words every
    `Dropout` mask is derived from (`step_key`).

    A Parameter, not a Python value, so that a compiled graph reads it when it runs rather than when it was
    compiled: a train-step graph assigns it from its own input before the forward pass (`assign`), eager
    code sets it before each step (`set_dropout_key`). A jit_class, so that graphs may read it without it
    becoming a weight of every Cell that uses it.
    """

    def __init__(self):
        self.value = Parameter(Tensor(step_key(0, 0)), name="dropout_key", requires_grad=False)


_MASK32, _MASK64 = 2**32 - 1, 2**64 - 1


def _splitmix64(value: int) -> int:
    """SplitMix64's finaliser on a Python int (exact, host side): a bijective 64-bit mix."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def _int32(word: int) -> int:
    """A 32-bit word as the int32 with the same bits."""
    word &= _MASK32
    return word - 2**32 if word >= 2**31 else word


def _odd_words(*values: int) -> tuple[int, int]:
    """Two odd 32-bit words hashed from any integers."""
    state = 0
    for value in values:
        state = _splitmix64(state ^ (value & _MASK64))
    return (state & _MASK32) | 1, (state >> 32) | 1


def step_key(seed: int, step: int, worker: int = 0) -> np.ndarray:
    """int32 (a, b, worker·a) of one training step: odd words a and b from (seed, step), and the worker's
    rank times a, which moves each worker's hash-word indices past those of the workers before it."""
    multiplier, offset = _odd_words(seed, step)
    return np.array([_int32(multiplier), _int32(offset), _int32(worker * multiplier)], np.int32)


def set_dropout_key(seed: int, step: int, worker: int = 0) -> None:
    """Key the masks of the next forward passes run op by op (compiled steps assign it in-graph)."""
    DROPOUT_KEY.value.set_data(Tensor(step_key(seed, step, worker)))


DROPOUT_KEY = DropoutKey()
_dropout_sites = itertools.count()


def reset_dropout_sites() -> None:
    """Number the Dropouts built from now on from 0 again (`seed_everything` calls it): a model built the
    same way after the same seeding gets the same site numbers, hence the same masks, as its weights."""
    global _dropout_sites
    _dropout_sites = itertools.count()


@constexpr
def index_range(count: int) -> Tensor:
    """0 … count − 1 as int32, a constant of the graph (no kernel: `ops.arange`'s Range primitive is
    documented for GPU and CPU only). Only a row's or a column's length, never an input's size."""
    return _index_range(count)


@functools.lru_cache(maxsize=64)
def _index_range(count: int) -> Tensor:
    return Tensor(np.arange(count, dtype=np.int32))


@constexpr
def row_word_offsets(rows_shape: tuple, words: int) -> Tensor:
    """row · words for every row of a grid, shaped rows_shape + (1,), int32 with wrapping (a graph constant)."""
    return _row_word_offsets(rows_shape, words)


@functools.lru_cache(maxsize=64)
def _row_word_offsets(rows_shape: tuple, words: int) -> Tensor:
    offsets = np.arange(math.prod(rows_shape), dtype=np.int64) * words
    return Tensor(offsets.astype(np.uint32).view(np.int32).reshape(rows_shape + (1,)))


@constexpr
def site_factors(sites: tuple, count: int) -> Tensor:
    """What the step key is multiplied by at each of `sites`, (len(sites), 3), for inputs of `count` hash
    words each (a graph constant)."""
    return _site_factors(sites, count)


@functools.lru_cache(maxsize=256)
def _site_factors(sites: tuple, count: int) -> Tensor:
    rows = []
    for site in sites:
        multiplier, offset = _odd_words(0x5175, site)
        rows.append([_int32(multiplier), _int32(offset), _int32(count * multiplier)])
    return Tensor(np.array(rows, np.int32))


def _logical_shift_xor(x, bits: int):
    """x ^ (x >>> bits) on int32 bits: MindSpore's right shift of int32 is arithmetic, so the sign copies are
    masked off (int32, not uint32: the integer dtype every device's xor, shift, and and multiply take)."""
    return ops.bitwise_xor(x, ops.bitwise_and(ops.bitwise_right_shift(x, bits), (1 << (32 - bits)) - 1))


def keep_masks(key, sites: tuple, shape: tuple, threshold: int, scale: float, dtype, cpu_kernel: bool = False) -> tuple:
    """The inverted-dropout masks of `sites` on inputs of one `shape`, computed on the device: 0 where a unit
    is dropped, else `scale`; one mask per site, each what that site draws alone.

    A counter-based hash, one 32-bit word per two neighbouring units of a row: the unit in global row r
    (worker w's rows follow those of workers 0 … w−1 in the global batch, so N workers draw the masks one
    process draws on their concatenated batch), column c of a row of W units reads word j = r·⌈W/2⌉ + ⌊c/2⌋
    (for even W, j = g >> 1 with g the unit's flat global index): for even c its low 16 bits, for odd c its
    high 16 bits with their top bit flipped (what comparing h read as int32 against an offset threshold reads).
    With the step's odd words (a, b) times the site's odd words (s, t): h = lowbias32(a·s·j + b·t) (Chris
    Wellons' 32-bit mix: xorshift 16, ×0x7feb352d, xorshift 15, ×0x846ca68b, xorshift 16). The unit is
    dropped when its 16 bits are < `threshold` (= round(p·2¹⁶), so the drop probability is p to 2⁻¹⁷).
    Half as many words as units halves the int32 work and the buffers it leaves (MindSpore 2.7's CPU graph
    backend keeps about one buffer per op for the graph's life). The sites of one shape are hashed as one
    stacked tensor (their words side by side on a leading axis, each with its own (s, t)): one pass of ~25
    kernels for all of a step's same-shaped sites, where each site alone took as many. Only int32 multiply
    (wrapping), add, xor, and, arithmetic right shift, compare, stack, unstack, split, slice and cast, all documented
    by MindSpore for Ascend, GPU and CPU, and no random state: equal (key, site, row, column) give equal masks
    op by op, compiled, after a resume and on any device. `cpu_kernel`: the same bits from the CPU kernel
    (`device.cpu_kernels`), one pass instead of MindSpore's slow CPU int32 kernels.
    """
    grid = shape or (1,)  # a scalar is one row of one
    rows, width = math.prod(grid[:-1]), grid[-1]
    words, count = (width + 1) // 2, len(sites)
    if cpu_kernel:
        masks = cpu_kernels.masks_op(count, shape, dtype)(
            key, site_factors(sites, rows * words), Tensor([threshold], mindspore.int32), Tensor([scale], dtype))
        return masks if count > 1 else (masks,)
    # per site (K, 3, 1, …, 1): its multiplier a·s, offset b·t and worker offset w·a·s·(rows·words), split
    # into three (K, 1, …, 1) that broadcast against the grid's axes
    factors = ops.reshape(ops.mul(key, site_factors(sites, rows * words)), (count, 3) + (1,) * (len(grid) - 1))
    multiplier, offset, worker_offset = ops.split(factors, 1, 1)
    # a·j + b with j = row·words + column word, as (a·(row·words) + b) + a·column word: small (K, rows…, 1)
    # and (K, 1…, words) tables and one broadcast add, the only input-sized op before the mix
    row_starts = ops.add(ops.mul(multiplier, row_word_offsets(grid[:-1], words)), ops.add(offset, worker_offset))
    h = ops.add(row_starts, ops.mul(multiplier, index_range(words)))
    h = ops.mul(_logical_shift_xor(h, 16), 0x7FEB352D)
    h = ops.mul(_logical_shift_xor(h, 15), _int32(0x846CA68B))
    # the last xorshift 16 leaves the high half as it is; the low half is then (h ^ h >> 16) & 0xffff
    keep_high = ops.greater_equal(h, threshold * 2**16 - 2**31)  # (high half ^ 0x8000) ≥ threshold
    low = ops.bitwise_and(ops.bitwise_xor(h, ops.bitwise_right_shift(h, 16)), 0xFFFF)
    keep = ops.reshape(ops.stack((ops.greater_equal(low, threshold), keep_high), -1),
                       (count,) + grid[:-1] + (2 * words,))
    if width % 2:
        keep = ops.slice(keep, (0,) * (len(grid) + 1), (count,) + grid)
    masks = ops.mul(ops.cast(keep, dtype), scale)
    if count == 1:
        return (ops.reshape(masks, shape),)
    return ops.unstack(ops.reshape(masks, (count,) + shape), 0)


def keep_mask(key, site: int, shape: tuple, threshold: int, scale: float, dtype, cpu_kernel: bool = False):
    """The mask of one site (`keep_masks` of that site alone)."""
    return keep_masks(key, (site,), shape, threshold, scale, dtype, cpu_kernel)[0]


def cpu_kernel_chosen() -> bool:
    """Whether masks computed by Cells built now come from the CPU kernel: the CPU's choice
    (`device.kernels`) where the kernel could be built."""
    return not device_kernels() and cpu_kernels.available()


class Dropout(nn.Cell):
    """Inverted dropout, active only in training mode (`set_train(True)`), with masks a pure function of
    (`DROPOUT_KEY`, site, row, column), see `keep_masks`. Each instance is one site (numbered as built),
    so a Dropout called twice in one step applies the same mask to same-shaped inputs. Inputs are batch
    first (every site's are), so that the worker offset of `keep_masks` lands on the worker's rows. `mask`:
    this site's mask computed beforehand together with others' (`SharedMasks`); None computes it here."""

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.site = next(_dropout_sites)
        self.threshold = min(round(p * 2**16), 2**16 - 1)
        self.scale = 1.0 / (1.0 - p)
        self.cpu_kernel = cpu_kernel_chosen() if p > 0.0 else False

    def construct(self, x, mask=None):
        mask = self.mask(x, mask)
        return x if mask is None else ops.mul(x, mask)

    def mask(self, x, mask=None):
        """The mask this site multiplies `x` by (`mask` if given), or None where it passes `x` through."""
        if not self.training or self.p == 0.0:
            return None
        if mask is None:
            mask = keep_mask(DROPOUT_KEY.value, self.site, x.shape, self.threshold, self.scale, x.dtype,
                             self.cpu_kernel)
        return ops.stop_gradient(mask)


class SharedMasks(nn.Cell):
    """The masks of several Dropouts of one probability whose inputs share a shape (a model's per-layer
    sites), computed at once: `keep_masks` over all their sites, the masks each would draw alone, in one
    pass of kernels instead of one per site. Called with the inputs' shape and dtype → one mask per Dropout,
    in their order, or Nones outside training (each Dropout then passes its input through)."""

    def __init__(self, dropouts):
        super().__init__()
        if len({dropout.p for dropout in dropouts}) > 1:
            raise ValueError(f"shared masks need one dropout probability, got {sorted({d.p for d in dropouts})}")
        self.sites = tuple(dropout.site for dropout in dropouts)
        self.p = dropouts[0].p
        self.threshold, self.scale = dropouts[0].threshold, dropouts[0].scale
        self.cpu_kernel = cpu_kernel_chosen() if self.p > 0.0 else False

    def construct(self, shape, dtype):
        if not self.training or self.p == 0.0:
            return (None,) * len(self.sites)
        return keep_masks(DROPOUT_KEY.value, self.sites, shape, self.threshold, self.scale, dtype, self.cpu_kernel)


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
