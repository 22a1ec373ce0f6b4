"""Which device MindSpore runs on and how its graphs compile, and the self-check a user runs first.

- `target.py`: `require_device(target)` switches MindSpore to CPU, GPU or Ascend, or stops with one line
  saying what is missing (CANN / CUDA libraries) and what to install.
- `jit.py`: `--jit_level O0|O1|O2`, the compilation level every compiled graph of the process uses.
- `check.py`: `scripts/check_device.sh`, this device's numbers against the PyTorch reference and the CPU.

Only MindSpore is imported here (never mindnlp), so a command can check its device before loading models.
"""
