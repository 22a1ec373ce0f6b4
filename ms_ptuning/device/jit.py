"""`--jit_level O0|O1|O2`: how MindSpore compiles every graph of the process (MindSpore 2.7.0's levels).

- O0: only the optimisations a graph needs to run; kernel-by-kernel execution. The default, and what every
  number in this repository was measured with.
- O1: O0 plus common graph optimisations and automatic operator fusion (graph kernel fusion); still kernel by
  kernel.
- O2: CANN's GraphEngine compiles and sinks the whole graph onto the NPU: Ascend only (MindSpore's docs), static
  shapes only. Refused on CPU and GPU.

The level is set once per process (`set_jit_level`, after the device) and read where graphs are made: the
compiled step engine and prediction graphs (`jit_config()`, `training/graph_steps.py`), GRAPH_MODE sections
(`backend.graph_mode`: static decoding, parity) and the PyNative `mindspore.jit` pieces of the encoders
(`function_jit_level()`).
"""

import mindspore

JIT_LEVELS = ("O0", "O1", "O2")
DEFAULT_JIT_LEVEL = "O0"
JIT_LEVEL_HELP = ("O0 (default: kernel by kernel, no fusion) | O1 (plus graph optimisations and operator fusion) | "
                  "O2 (Ascend only: CANN's GraphEngine sinks whole graphs)")

_level = DEFAULT_JIT_LEVEL


def set_jit_level(level: str, device_target: str = None) -> None:
    """Compile this process's graphs at `level` on `device_target` (default: MindSpore's current device);
    ValueError for a level MindSpore does not have or does not run on that device."""
    global _level
    if level not in JIT_LEVELS:
        raise ValueError(f"--jit_level must be one of {', '.join(JIT_LEVELS)}, got {level!r}")
    device = device_target or mindspore.get_context("device_target")
    if level == "O2" and device != "Ascend":
        raise ValueError(f"--jit_level O2: MindSpore runs O2 through CANN's GraphEngine, on Ascend only; on {device} "
                         "use O0 or O1")
    _level = level


def jit_level() -> str:
    return _level


def jit_config() -> mindspore.JitConfig:
    """For `Cell.set_jit_config` on every compiled Cell."""
    return mindspore.JitConfig(jit_level=_level)


def function_jit_level() -> str:
    """For `mindspore.jit(fn, jit_level=...)`, which takes O0 or O1 only in 2.7.0 (it raises on O2: the
    GraphEngine compiles whole Cells); under O2 those PyNative pieces compile at O1."""
    return "O1" if _level == "O2" else _level
