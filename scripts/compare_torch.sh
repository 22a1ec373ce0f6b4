#!/usr/bin/env bash
# ms_ptuning vs the PyTorch reference on the same safetensors weights: prints max-abs logit and relative
# gradient differences per backbone × mode. Flags go to `python -m ms_ptuning.parity` (--help lists them),
# e.g. --config_from DIR to use a real model's sizes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m ms_ptuning.parity "$@"
