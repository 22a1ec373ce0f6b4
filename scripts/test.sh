#!/usr/bin/env bash
# The test suite, on a fresh machine too: sets up .venv when needed, then runs pytest.
# Two pytest workers, each taking whole files (their module fixtures run once): most of the suite is one busy
# thread (compiling graphs, starting processes), so on 2 cores it takes ~17 instead of ~24 minutes.
# Arguments go to pytest after these, so `-n 0` runs in one process and `-n 4` uses four workers.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m pytest tests -q -p no:cacheprovider --timeout 1200 -n 2 --dist loadfile "$@"
