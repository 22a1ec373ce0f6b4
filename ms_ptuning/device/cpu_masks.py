"""The dropout masks' CPU kernel: `cpu_masks.cc`, compiled once per machine, run as a MindSpore `Custom` op of
type "aot" (a compiled C++ kernel on the CPU device, not a Python function).

Why: MindSpore 2.7's CPU kernels for int32 add, multiply and shift take 3–4 ns per element (bitwise xor/and
of equal shapes 0.5 ns), so `layers.keep_masks`' composed hash, ~25 kernels over every unit, was a third of a
BERT-base train step and kept ~1.3 GB of temporaries. The kernel computes the same bits (tests/test_dropout.py
compares them) in one pass. Only the CPU choice takes it (`device.kernels.device_kernels()` False); Ascend and
GPU compute the composed hash, which their integer kernels run natively.

Built with `$CXX` (default g++) into `$MS_PTUNING_CACHE` (default ~/.cache/ms_ptuning)/cpu_kernels, named by
the source's hash, written atomically (concurrent msrun workers). Without a compiler the composed hash runs
instead, with one warning: same masks, slower.
"""

import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
import warnings

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cpu_masks.cc")
FUNCTION = "DropoutMasks"
FLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC", "-pthread")


def cache_dir() -> str:
    return os.path.join(os.environ.get("MS_PTUNING_CACHE", os.path.expanduser("~/.cache/ms_ptuning")), "cpu_kernels")


@functools.lru_cache(maxsize=1)
def library() -> str | None:
    """Path of the compiled kernel library, built on first use; None (and one warning) if it cannot be built."""
    compiler = shutil.which(os.environ.get("CXX", "g++"))
    with open(SOURCE, "rb") as handle:
        digest = hashlib.sha256(handle.read() + " ".join(FLAGS).encode()).hexdigest()[:16]
    path = os.path.join(cache_dir(), f"cpu_masks-{digest}.so")
    if os.path.exists(path):
        return path
    if compiler is None:
        warnings.warn(f"no C++ compiler ({os.environ.get('CXX', 'g++')}) found: dropout masks on CPU use the "
                      "composed int32 hash (the same masks, several times slower); install g++ or set CXX")
        return None
    os.makedirs(cache_dir(), exist_ok=True)
    handle, partial = tempfile.mkstemp(suffix=".so", dir=cache_dir())
    os.close(handle)
    result = subprocess.run([compiler, *FLAGS, "-o", partial, SOURCE], capture_output=True, text=True)
    if result.returncode != 0:
        os.unlink(partial)
        warnings.warn(f"{compiler} could not build {SOURCE}: dropout masks on CPU use the composed int32 hash "
                      f"(the same masks, slower):\n{result.stderr[-2000:]}")
        return None
    os.replace(partial, path)
    return path


def available() -> bool:
    return library() is not None


@functools.lru_cache(maxsize=256)
def masks_op(count: int, shape: tuple, dtype):
    """The Custom op computing `count` masks of `shape` and `dtype`:
    (key (3,), site factors (count, 3), threshold (1,), scale (1,) in dtype) → count masks."""
    from mindspore import ops

    # one output as a bare shape and dtype: MindSpore reads a one-shape tuple ((2, 1),) as something else
    out_shape, out_dtype = (shape, dtype) if count == 1 else ((shape,) * count, (dtype,) * count)
    op = ops.Custom(f"{library()}:{FUNCTION}", out_shape=out_shape, out_dtype=out_dtype, func_type="aot")
    op.add_prim_attr("mask_shape", tuple(shape))
    op.add_prim_attr("mask_count", count)
    return op
