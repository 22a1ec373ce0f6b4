"""`python -m ms_ptuning.chat`: the prompt/response P-tuning command (train.py)."""

import sys

from .train import main

if __name__ == "__main__":
    sys.exit(main())
