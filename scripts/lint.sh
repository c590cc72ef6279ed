#!/usr/bin/env bash
# Set everything up (scripts/setup.sh), then lint the repository with ruff (rules in ruff.toml).
# Extra arguments go to `ruff check` (e.g. --fix, or paths).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh" >/dev/null
cd "$root"
exec "$root/.venv/bin/ruff" check "$@"
