"""The single entry point to the MindSpore/MindNLP runtime.

Importing this module imports mindnlp, after which `import torch` resolves to mindtorch (MindSpore
underneath). Everything that touches the mindnlp stack imports it from here, so the bridge between plain
MindSpore Cells and mindtorch modules lives in one place. The package loads it before any module that needs
it, whichever is imported first (`BackendFirst` in ms_ptuning/__init__.py).
"""

import contextlib
import os
import random
import sys
import types

if "torch" in sys.modules and "mindtorch" not in sys.modules:
    raise ImportError("ms_ptuning runs on MindSpore through mindnlp, which must be imported before torch, but this "
                      "process has already imported PyTorch (directly or through transformers, peft, accelerate). "
                      "Import ms_ptuning first; the PyTorch reference (ms_ptuning.reference) needs a process of its "
                      "own.")


@contextlib.contextmanager
def placeholder_module(name: str):
    """`name` answers imports with an empty module inside the block, and loads normally again after it."""
    placeholder = types.ModuleType(name)
    sys.modules[name] = placeholder
    try:
        yield
    finally:
        parent_name, _, child = name.rpartition(".")
        if sys.modules.get(name) is placeholder:
            del sys.modules[name]
        if getattr(sys.modules.get(parent_name), child, None) is placeholder:
            delattr(sys.modules[parent_name], child)


# mindnlp's `__init__` ends with `from . import diffusers`, which star-imports all of diffusers (every pipeline
# and model module): about a second and 45 MB on every command, and its "Modular Diffusers is currently an
# experimental feature" notice, for a library ms_ptuning never uses. `import mindnlp.diffusers` still loads it.
with placeholder_module("mindnlp.diffusers"):
    import mindnlp  # noqa: F401  (side effect: `torch` becomes mindtorch, HF models run on MindSpore)
import mindspore
import numpy as np
import torch
from mindspore import ops
from mindspore.ops import operations as ms_ops
from mindspore.ops.function.random_func import _get_seed
from mindtorch._apis import cpu as mindtorch_cpu_api
from mindtorch._apis import gpu as mindtorch_gpu_api
from mindtorch._op_prim.cpu import legacy as mindtorch_legacy
from mindtorch._bind import get_device_in_context

from .device.jit import jit_level
from .device.target import require_device
from .layers import reset_dropout_sites, set_dropout_key

_MINDTORCH_DEVICE = {"CPU": "cpu", "GPU": "cuda", "Ascend": "npu"}


def set_device_target(target: str) -> None:
    """Run MindSpore kernels on CPU, GPU or Ascend (PyNative mode); a device MindSpore cannot load stops
    with one line naming what is missing (`device.target`). `device.jit.set_jit_level` comes after it."""
    require_device(target)


@contextlib.contextmanager
def graph_mode():
    """Compile the Cells called inside (GRAPH_MODE, at the process's `--jit_level`) and return to the mode
    before.

    Each Cell compiles once per input shape; mindtorch/mindnlp eager code needs PyNative again afterwards."""
    previous = mindspore.get_context("mode")
    mindspore.set_context(mode=mindspore.GRAPH_MODE, jit_config={"jit_level": jit_level()})
    try:
        yield
    finally:
        mindspore.set_context(mode=previous)


def set_threads(num_threads: int) -> None:
    """CPU kernel threads (MindSpore's intra-op pool), like torch.set_num_threads; call before the first op."""
    from mindspore.device_context.cpu.op_tuning import threads_num

    threads_num(num_threads)


def default_device() -> "torch.device":
    return torch.device(_MINDTORCH_DEVICE[mindspore.get_context("device_target")])


def _device_or_context_default(tensor):
    """`Tensor.device` that falls back to mindtorch's current device instead of raising.

    mindnlp replaces MindSpore's Tensor methods and operators with mindtorch's, which read `tensor.device`;
    tensors produced by `mindspore.ops` (inside our Cells, and inside MindSpore's own composite functions
    such as `ops.cross_entropy`) never get one, so without this every Cell would fail on its first `a + b`.
    """
    device = getattr(tensor, "_device", None)
    return device if device is not None else get_device_in_context()


def install_device_fallback() -> None:
    torch.Tensor.device = property(_device_or_context_default)


install_device_fallback()


_move_to = torch.Tensor._move_to


def _move_unless_already_there(self, device, non_blocking=False):
    """`Tensor.to(device)` that returns the tensor itself when it is already on `device`.

    mindtorch 0.5.1 copies a tensor through numpy on every move to the CPU, even from the CPU, which cuts
    it out of the gradient graph: GPT-2's `position_embeds.to(inputs_embeds.device)` left `wpe` with a zero
    gradient. torch returns the tensor itself in that case.
    """
    if device.type != "meta" and self.device == device:
        return self
    return _move_to(self, device, non_blocking)


def install_same_device_move() -> None:
    torch.Tensor._move_to = _move_unless_already_there


install_same_device_move()


def install_cpu_matmul_broadcast() -> None:
    """Let mindtorch's CPU `matmul` broadcast batch dimensions, as torch and mindtorch's GPU `matmul` do.

    Without it (B, heads, T, d) @ (1, heads, d, S) raises in MindSpore's BatchMatMul, which breaks Hugging
    Face DeBERTa's relative-position attention for any batch larger than one.
    """
    plain_matmul = mindtorch_cpu_api.matmul

    def matmul(input, other):
        if input.ndim > 2 and input.ndim == other.ndim and input.shape[:-2] != other.shape[:-2]:
            batch = tuple(max(a, b) for a, b in zip(input.shape[:-2], other.shape[:-2]))
            input = mindtorch_cpu_api.broadcast_to(input, batch + tuple(input.shape[-2:]))
            other = mindtorch_cpu_api.broadcast_to(other, batch + tuple(other.shape[-2:]))
        return plain_matmul(input, other)

    mindtorch_cpu_api.matmul = matmul


install_cpu_matmul_broadcast()


def _cpu_dense_as_matmul(input, weight, bias=None):  # noqa: A002  (mindtorch's signature)
    """mindtorch's CPU `linear` through MindSpore's MatMul(transpose_b) + BiasAdd on a 2-D view.

    mindtorch 0.5.1 runs CPU `linear` on MindSpore's Dense kernel, which measured 3-4× slower than MatMul on
    the same (tokens, in) × (out, in)ᵀ product here; linear layers are most of a transformer's time.
    """
    leading = tuple(input.shape[:-1])
    flat = mindtorch_legacy.reshape(input, (-1, input.shape[-1])) if len(leading) != 1 else input
    output = mindtorch_legacy.mat_mul(flat, weight, False, True)
    if bias is not None:
        output = mindtorch_legacy.bias_add(output, bias, "NCHW")
    return mindtorch_legacy.reshape(output, leading + (weight.shape[0],)) if len(leading) != 1 else output


def install_fast_cpu_dense() -> None:
    mindtorch_cpu_api.dense = _cpu_dense_as_matmul


install_fast_cpu_dense()


def _seeded_cpu_dropout(input, p, seed, offset):  # noqa: A002  (mindtorch's signature)
    """mindtorch's CPU dropout with reproducible masks.

    mindtorch 0.5.1 runs CPU dropout as MindSpore's Dropout kernel with seeds (0, 0), i.e. a fresh random
    seed on every call, so neither `torch.manual_seed` nor `mindspore.set_seed` makes a run repeatable.
    Here the seeds come from MindSpore's graph seed and per-kernel counter, as `mindspore.ops.dropout`
    does: after `mindspore.set_seed(s)` the sequence of masks is a pure function of `s`.
    """
    seed0, seed1 = _get_seed(None, "dropout")
    return ms_ops.Dropout(keep_prob=1.0 - p, Seed0=seed0, Seed1=seed1)(input)


def install_reproducible_dropout() -> None:
    mindtorch_cpu_api.dropout = _seeded_cpu_dropout


install_reproducible_dropout()


_cpu_embedding = mindtorch_cpu_api.embedding


def _cpu_embedding_without_padding_gradient(input, weight, padding_idx, max_norm, norm_type,  # noqa: A002
                                            scale_grad_by_freq):  # mindtorch's signature
    """mindtorch's CPU `embedding` with torch's `padding_idx` rule: the looked-up rows are the same, but
    the row `padding_idx` receives no gradient.

    mindtorch 0.5.1 looks rows up with a plain Gather and drops `padding_idx`, so its backward scatters into
    the padding row: eager fine-tuning trained the padding rows of BERT's word table (and RoBERTa's word and
    position tables), which torch and the native Cells keep fixed.
    """
    rows = _cpu_embedding(input, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq)
    if padding_idx is None:
        return rows
    return ops.where(ops.expand_dims(ops.ne(input, padding_idx), -1), rows, ops.stop_gradient(rows))


def install_cpu_embedding_padding_idx() -> None:
    mindtorch_cpu_api.embedding = _cpu_embedding_without_padding_gradient


install_cpu_embedding_padding_idx()


def install_scaled_products_in_torch_order() -> None:
    """`baddbmm` and `addmm` as torch computes them on CPU and GPU: beta·input + alpha·(batch1 @ batch2).

    mindtorch 0.5.1's `torch.baddbmm` / `torch.addmm` hand (beta, alpha) to device functions whose CPU and GPU
    versions take (alpha, beta), so the two scales swapped: BLOOM's attention, `alibi.baddbmm(query, key,
    beta=1, alpha=1/sqrt(head_dim))`, scaled the ALiBi bias instead of the scores (logits 1.5e-2 off
    transformers' on a tiny model). Its NPU version passes them on in MindSpore's (beta, alpha) order and is
    left as it is. GPU: the same code as the CPU's, designed for, not run.
    """
    for api in (mindtorch_cpu_api, mindtorch_gpu_api):
        for name in ("baddbmm", "addmm"):
            setattr(api, name, _scales_in_torch_order(getattr(api, name)))


def _scales_in_torch_order(device_function):
    """`device_function(input, first, second, alpha, beta)` called with the (beta, alpha) it receives."""
    def scaled_product(input, first, second, beta=1, alpha=1):  # noqa: A002  (mindtorch's signature)
        return device_function(input, first, second, alpha, beta)
    return scaled_product


install_scaled_products_in_torch_order()


def to_mindtorch(tensor, like=None):
    """Tag a tensor made by a plain MindSpore Cell so that mindtorch ops accept it.

    mindtorch stores its device on the tensor (`_device`) and its dispatcher refuses tensors without one;
    tensors computed by `mindspore.ops` inside our Cells never get it. `like` is any mindtorch tensor whose
    device the result should carry (the backbone's parameters); without it the default device is used.
    """
    tensor._device = like.device if like is not None else default_device()
    return tensor


def seed_everything(seed: int) -> None:
    """Fix python, numpy, MindSpore and mindtorch RNGs: data order, initialisation and dropout (and number
    the `layers.Dropout` sites built from here on from 0)."""
    random.seed(seed)
    np.random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    mindspore.set_seed(seed)
    torch.manual_seed(seed)
    reset_dropout_sites()


def seed_step(seed: int, step: int, worker: int = 0) -> None:
    """Reseed dropout for one training step, so its masks depend on (seed, step, data-parallel worker)
    alone and a resumed run draws exactly the masks the uninterrupted run drew; workers draw their own.
    Reseeds mindtorch's dropout (MindSpore's kernel, above) and keys `layers.Dropout`."""
    set_dropout_key(seed, step, worker)
    mindspore.set_seed((seed * 1_000_003 + step + worker * 7_919_993) % (2**31 - 1) + 1)
