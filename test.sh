#!/usr/bin/env bash
# Sets up .venv and runs the whole test suite.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$root/scripts/ensure_env.sh"
cd "$root"
exec "$root/.venv/bin/python" -m pytest "$@"
