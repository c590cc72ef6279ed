#!/usr/bin/env bash
# Set everything up (scripts/setup.sh), then run the closed-loop simulated guidance headless:
# a held-out phantom patient, the PyBullet arm, a beating heart, the shipped model, target A4C.
# Prints the final effective error from the simulator's ground truth and writes a picture.
# Extra arguments are launch arguments (name:=value) or options of `echoposed launch`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
cd "$root"
out="$root/out/demo"
mkdir -p "$out"
exec "$root/.venv/bin/echoposed" launch sim_guidance target:=A4C robot:=arm cardiac_motion:=true \
  --duration 60 --stop-after-converged 2 --quiet --isolated \
  --summary "$out/summary.json" --plot "$out/guidance.png" "$@"
