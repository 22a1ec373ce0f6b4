"""`python -m ms_ptuning.comparison`: whole runs on both sides, one seed at a time (driver.py)."""

import sys

from .driver import main

if __name__ == "__main__":
    sys.exit(main())
