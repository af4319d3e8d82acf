#!/usr/bin/env bash
# Create or reuse .venv and install sdesolve with its dev and docs extras.
# Where no torch is present, install the pinned CPU build first (an unpinned torch pulls a multi-GB CUDA build);
# pyproject.toml keeps a normal range so GPU users keep their own build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[dev,docs,diffusers,digits]"
# k-diffusion: the parity tests load its sampling.py alone; its declared deps (torchvision, wandb, kornia, ...)
# are not needed and torchvision does not import beside this torch, hence --no-deps.
.venv/bin/python -m pip install -q --no-deps "k-diffusion==0.1.1.post1"
