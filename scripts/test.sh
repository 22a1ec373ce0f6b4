#!/usr/bin/env bash
# The test suite, on a fresh machine too: sets up .venv when needed, then runs pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m pytest tests -q -p no:cacheprovider --timeout 1200 "$@"
