#!/usr/bin/env bash
# Sets up .venv and runs the whole test suite, one test file per worker on 2
# workers (most of a test's time is single-threaded tracing and XLA
# compilation), files in the order tests/conftest.py gives (slowest first).
# Extra arguments go to pytest, e.g. `bash test.sh -m "not slow"`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$root/scripts/ensure_env.sh"
cd "$root"
exec "$root/.venv/bin/python" -m pytest -n 2 --dist loadfile --no-loadscope-reorder "$@"
