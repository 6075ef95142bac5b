#!/usr/bin/env bash
# Sets up .venv and runs the main job on the built-in synthetic dataset.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$root/scripts/ensure_env.sh"
cd "$root"
exec "$root/.venv/bin/python" -m deeplab2.quickstart "$@"
