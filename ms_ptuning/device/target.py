"""Switch MindSpore to a device, or explain in one line why it cannot run there.

MindSpore 2.7.0 ships one wheel for CPU, GPU and Ascend; its GPU and Ascend backends are plugins
(`mindspore/lib/plugin/libmindspore_gpu.so.<cuda>`, `libmindspore_ascend.so.2`) that the dynamic loader opens
when `mindspore.set_device` asks for them. Without CANN (or with its `set_env.sh` not sourced) or without the
CUDA libraries, `set_device` raises a RuntimeError of some 15 lines after printing environment warnings
on stderr from its own checks; for GPU its "Device load error message" lists the Ascend plugin's libraries,
not the CUDA ones. `require_device` keeps that noise off the terminal, asks the dynamic loader which libraries
the device's plugin cannot find, and raises `DeviceUnavailableError` (a ValueError: the commands print it as
`PROG: error: ...` with exit status 2). A backend that loads keeps float32 computations in float32
(`keep_float32`) and is made to run one operation, so a missing or busy device fails here too, not in the
middle of a run.
"""

import contextlib
import glob
import os
import re
import subprocess
import sys
import tempfile

import mindspore
import numpy as np

DEVICE_TARGETS = ("CPU", "GPU", "Ascend")

# MindSpore 2.7.0's install guide pairs it with CANN 8.2.RC1 on Ascend; its wheel carries GPU plugins built
# for CUDA 11.1 and 11.6 with cuDNN 8 (and its environment check accepts CUDA 10.1, 11.1, 11.6).
REQUIREMENTS = {
    "Ascend": "install CANN 8.2.RC1 and source its set_env.sh",
    "GPU": "install CUDA 11.6 and cuDNN 8 and put their libraries on LD_LIBRARY_PATH",
}
PLUGINS = {"Ascend": "libmindspore_ascend.so*", "GPU": "libmindspore_gpu.so*"}
SHOWN_LIBRARIES = 4


class DeviceUnavailableError(ValueError):
    """MindSpore cannot run on the requested device here (the message says what is missing)."""


def require_device(target: str) -> None:
    """Run MindSpore on `target` (PyNative mode), or raise DeviceUnavailableError / ValueError in one line."""
    if target not in DEVICE_TARGETS:
        raise ValueError(f"--device_target must be one of {', '.join(DEVICE_TARGETS)}, got {target!r}")
    if mindspore.get_context("device_target") == target:
        return  # MindSpore refuses to set the device again once its runtime has started
    with captured_stderr() as captured:
        try:
            mindspore.set_context(mode=mindspore.PYNATIVE_MODE)
            mindspore.set_device(target)
        except RuntimeError as error:
            raise DeviceUnavailableError(cannot_load(target, missing_libraries(target, str(error)))) from None
        keep_float32(target)
        try:
            (mindspore.Tensor(np.ones(2, np.float32)) * 2).asnumpy()
        except RuntimeError as error:
            raise DeviceUnavailableError(
                f"--device_target {target}: MindSpore loaded its {target} backend but cannot run an operation "
                f"on the device ({first_line(str(error))}); check the device with "
                f"{'npu-smi info' if target == 'Ascend' else 'nvidia-smi'}, then run "
                f"scripts/check_device.sh --device_target {target}") from None
    sys.stderr.write(captured.text)  # it runs: MindSpore's warnings (e.g. a version mismatch) are the user's


def keep_float32(target: str) -> None:
    """float32 stays float32 on the device; ms_ptuning chooses lower precision itself (--mixed_precision casts
    the frozen backbone explicitly). Atlas training-series NPUs otherwise default to `force_fp16`, running
    float32 matmuls in float16; on GPU, TF32 matmuls stay off (MindSpore's default, made explicit)."""
    if target == "Ascend":
        mindspore.device_context.ascend.op_precision.precision_mode("must_keep_origin_dtype")
    elif target == "GPU":
        mindspore.device_context.gpu.op_precision.matmul_allow_tf32(False)


def cannot_load(target: str, missing: str) -> str:
    return (f"--device_target {target}: MindSpore cannot load its {target} backend here ({missing}); "
            f"{REQUIREMENTS[target]}, then run scripts/check_device.sh --device_target {target}")


def missing_libraries(target: str, error: str) -> str:
    """What the dynamic loader cannot find for `target`'s plugin: the libraries `ldd` reports "not found"
    (the first few, then how many more), else the library MindSpore's error names, else its first line."""
    plugins = sorted(glob.glob(os.path.join(os.path.dirname(mindspore.__file__), "lib", "plugin", PLUGINS[target])))
    if not plugins:
        return f"this mindspore package has no {target} plugin (lib/plugin/{PLUGINS[target]})"
    missing = unresolved_libraries(plugins[-1])  # GPU: the plugin for the newest CUDA
    if missing:
        more = len(missing) - SHOWN_LIBRARIES
        return ", ".join(missing[:SHOWN_LIBRARIES]) + (f" and {more} more" if more > 0 else "") + " not found"
    named = re.search(r"([\w.+-]+\.so[\w.]*): cannot open shared object file", error)
    return f"{named.group(1)} not found" if named else first_line(error)


def unresolved_libraries(library: str) -> list:
    """The shared libraries `library` needs that the dynamic loader cannot find, in ldd's order."""
    try:
        listing = subprocess.run(["ldd", library], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    names = re.findall(r"^\s*(\S+) => not found", listing, flags=re.MULTILINE)
    return list(dict.fromkeys(names))


def first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "no message")


class _Captured:
    text = ""


@contextlib.contextmanager
def captured_stderr():
    """Collect what is written to file descriptor 2 (Python's and MindSpore's C++ logs alike) meanwhile."""
    captured = _Captured()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.text = sink.read().decode(errors="replace")
