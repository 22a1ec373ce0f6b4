"""The single entry point to the MindSpore/MindNLP runtime.

Importing this module imports mindnlp, after which `import torch` resolves to mindtorch (MindSpore
underneath). Everything that touches the mindnlp stack imports it from here, so the bridge between plain
MindSpore Cells and mindtorch modules lives in one place.
"""

import os
import random

import mindnlp  # noqa: F401  (side effect: `torch` becomes mindtorch, HF models run on MindSpore)
import mindspore
import numpy as np
import torch
from mindtorch._bind import get_device_in_context

DEVICE_TARGETS = ("CPU", "GPU", "Ascend")
_MINDTORCH_DEVICE = {"CPU": "cpu", "GPU": "cuda", "Ascend": "npu"}


def set_device_target(target: str) -> None:
    """Run MindSpore kernels on CPU, GPU or Ascend (PyNative mode)."""
    if target not in DEVICE_TARGETS:
        raise ValueError(f"device_target must be one of {DEVICE_TARGETS}, got {target!r}")
    mindspore.set_context(mode=mindspore.PYNATIVE_MODE)
    mindspore.set_device(target)


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


def to_mindtorch(tensor, like=None):
    """Tag a tensor made by a plain MindSpore Cell so that mindtorch ops accept it.

    mindtorch stores its device on the tensor (`_device`) and its dispatcher refuses tensors without one;
    tensors computed by `mindspore.ops` inside our Cells never get it. `like` is any mindtorch tensor whose
    device the result should carry (the backbone's parameters); without it the default device is used.
    """
    tensor._device = like.device if like is not None else default_device()
    return tensor


def seed_everything(seed: int) -> None:
    """Fix python, numpy, MindSpore and mindtorch RNGs: data order, initialisation and dropout."""
    random.seed(seed)
    np.random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    mindspore.set_seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every RNG state a training run depends on, for exact resume."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "mindspore": mindspore.get_rng_state(),
        "mindtorch": torch.get_rng_state(),
    }


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    mindspore.set_rng_state(state["mindspore"])
    torch.set_rng_state(state["mindtorch"])
