#!/usr/bin/env bash
# Set up, then run every check: ruff, the pytest suite, `sdesolve verify --quick`, the docs build and the
# quick benchmarks. With CI=true (or SLOW=1) the slow convergence studies run too.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MPLBACKEND=Agg
.venv/bin/ruff check .
if [ "${CI:-}" = "true" ] || [ "${SLOW:-}" = "1" ]; then marker="slow or not slow"; else marker="not slow"; fi
.venv/bin/python -m pytest -q -m "$marker" -p no:cacheprovider -n "${PYTEST_WORKERS:-2}"
OMP_NUM_THREADS=1 .venv/bin/sdesolve verify --quick
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict -d site  # exactly the README's build (-q would hide warnings)
.venv/bin/python -m benchmarks --quick
