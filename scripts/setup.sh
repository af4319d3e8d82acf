#!/usr/bin/env bash
# Create or reuse .venv and install sdesolve with its dev and docs extras.
# Where no torch is present, install the pinned CPU build first (an unpinned torch pulls a multi-GB CUDA build);
# pyproject.toml keeps a normal range so GPU users keep their own build.
# The install is editable, so code changes need no reinstall: the pip steps run again only when pyproject.toml
# or this script changed (their hash is kept in .venv/.setup-stamp) or FORCE=1.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
STAMP=.venv/.setup-stamp
WANT=$(cat pyproject.toml scripts/setup.sh | .venv/bin/python -c "import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())")
if [ "${FORCE:-0}" != 1 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && .venv/bin/python -c "import importlib.metadata as m; m.version('sdesolve')" 2>/dev/null; then
    exit 0
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[dev,docs,diffusers,digits,testing]"
# k-diffusion: the parity tests load its sampling.py alone; its declared deps (torchvision, wandb, kornia, ...)
# are not needed and torchvision does not import beside this torch, hence --no-deps.
.venv/bin/python -m pip install -q --no-deps "k-diffusion==0.1.1.post1"
echo "$WANT" > "$STAMP"
