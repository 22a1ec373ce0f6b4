"""The one per-device choice of how the native backbones compute: MindSpore's fused kernels on Ascend and GPU,
elementwise compositions on CPU. Each Cell asks `device_kernels()` once, when it is built.

On an NPU or a GPU running kernel by kernel each launch costs several µs to tens of µs, and at BERT-base size
launches, not FLOPs, bound a step: there the backbones take the fewest kernels: MindSpore's LayerNorm kernel,
its GeLU kernel for the tanh GELU (GPT-2; BERT's erf GELU has no exact kernel that also runs on CPU and stays
composed), each with its registered backward; BERT's q/k/v as one product; heads split and merged by reshape +
transpose; softmax with its registered backward; masks and table rows broadcast by the elementwise ops. On
CPU, MindSpore 2.7's compiled graphs keep 1.3–4 output-sized buffers alive per call site of a transpose, a
broadcasting op or those default backwards (see `functional.py`), and the LayerNorm kernel's backward is slower
than its composition: there they compose. Both choices compute what Hugging Face computes within the parity
bounds (tests/test_native_backbones.py runs both on CPU); the devices' choice was not run on a device.

The same choice gives the CPU ms_ptuning's own compiled kernels (`cpu_kernels.py`) where it could build them:
the dropout masks (`layers.cpu_kernel_chosen`; the devices compose the same int32 hash from documented ops,
tests/test_dropout.py compares the two), GELU, LayerNorm and attention's softmax (tests/test_cpu_kernels.py).

`FORCED` (None: by `--device_target`, MindSpore's device target when the Cell is built) overrides the choice:
`benchmarks.kernels` and the tests compile the devices' choice on CPU with `forced(True)`.
"""

import contextlib

from mindspore import get_context

FORCED = None


def device_kernels() -> bool:
    """Whether Cells built now take the devices' kernels (True) or the CPU's compositions (False)."""
    return get_context("device_target") != "CPU" if FORCED is None else FORCED


@contextlib.contextmanager
def forced(choice: bool):
    """Build Cells with the devices' kernels (True) or the CPU's compositions (False) whatever the target."""
    global FORCED
    previous, FORCED = FORCED, choice
    try:
        yield
    finally:
        FORCED = previous
