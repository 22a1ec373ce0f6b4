#!/usr/bin/env bash
# The embedded default, offline: P-tuning v2 on Rotten Tomatoes sentiment with all-MiniLM-L6-v2.
# Flags go to `python -m ms_ptuning.demo` (--help), e.g. --modes prefix,prompt,finetune.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m ms_ptuning.demo "$@"
