#!/usr/bin/env bash
# Set up, then run the main job: `sdesolve sample` on the embedded 2-D Gaussian mixture.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/sdesolve sample "$@"
