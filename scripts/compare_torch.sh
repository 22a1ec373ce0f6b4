#!/usr/bin/env bash
# ms_ptuning vs the PyTorch reference on the same safetensors weights: prints max-abs logit and relative
# gradient differences per backbone × mode. Flags go to `python -m ms_ptuning.parity` (--help lists them),
# e.g. --config_from DIR to use a real model's sizes. With --train_steps N both sides train N optimizer steps
# from the same start on the same batches instead (`python -m ms_ptuning.parity_training`, warmup + linear
# decay, clipping, accumulation 2) and the table shows the largest loss and final-weight differences.
# With --task TASK it trains that task on both sides instead, whole runs over --seeds (python -m
# ms_ptuning.comparison: every python -m ms_ptuning.run flag, --seeds, --dropout, --compare_steps).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
module=ms_ptuning.parity
for argument in "$@"; do
  case "$argument" in
    --train_steps | --train_steps=*) module=ms_ptuning.parity_training ;;
    --task | --task=*) module=ms_ptuning.comparison ;;
  esac
done
exec "$ROOT/.venv/bin/python" -m "$module" "$@"
