#!/usr/bin/env bash
# The first command to run on a new machine: does ms_ptuning compute on this device what it computes on CPU
# and what the PyTorch reference computes? Tiny BERT, RoBERTa, GPT-2 (graph) and DeBERTa-v2 (eager) in prefix,
# prompt and finetune mode: logits and gradients against torch on the same weights, 20 training steps with
# dropout against the same steps on CPU, GPT-2 greedy tokens. One table, `N passed, M failed`, exit status 1
# on a failure (2: the device or a flag refused). Flags go to `python -m ms_ptuning.device.check`:
#   bash scripts/check_device.sh --device_target Ascend --mixed_precision bf16
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m ms_ptuning.device.check "$@"
