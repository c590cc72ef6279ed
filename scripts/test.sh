#!/usr/bin/env bash
# Set everything up (scripts/setup.sh), then run the whole test suite. Extra arguments go to pytest:
# scripts/test.sh -m 'not slow' leaves out the tests marked slow (over about 2 s each) for a quick loop.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
cd "$root"
exec "$root/.venv/bin/python" -m pytest "$@"
