"""Which device MindSpore runs on and how its graphs compile, and the self-check a user runs first.

- `target.py`: `require_device(target)` switches MindSpore to CPU, GPU or Ascend, or stops with one line
  saying what is missing (CANN / CUDA libraries) and what to install.
- `jit.py`: `--jit_level O0|O1|O2`, the compilation level every compiled graph of the process uses.
- `check.py`: `scripts/check_device.sh`, this device's numbers against the PyTorch reference and the CPU.
- `kernels.py`: the one per-device choice of how graphs compute (MindSpore's fused kernels on Ascend and GPU,
  compositions on CPU), made when a Cell is built.
- `cpu_kernels.py` (+ `cpu_kernels.cc`): compiled C++ kernels for the dropout masks, GELU, LayerNorm and
  attention's softmax, the CPU's choice.

Only MindSpore is imported here (never mindnlp), so a command can check its device before loading models.
"""
