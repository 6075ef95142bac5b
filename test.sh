#!/usr/bin/env bash
# Sets up .venv and runs the whole test suite, one test file per worker on 3
# workers for 2 cores: most of a test's time is single-threaded tracing, graph
# optimization and XLA compilation, so a third worker fills the cores (on a
# 2-core machine the suite took 2361 and 2506 s in two runs, 190% CPU, against
# 2604 s with 2 workers), files in the order tests/conftest.py gives (slowest
# first).
# Extra arguments go to pytest, e.g. `bash test.sh -m "not slow"`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$root/scripts/ensure_env.sh"
cd "$root"
exec "$root/.venv/bin/python" -m pytest -n 3 --dist loadfile --no-loadscope-reorder "$@"
