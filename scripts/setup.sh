#!/usr/bin/env bash
# Create .venv in the repository root and install the server (CPU build of PyTorch), idempotently.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first, pinned: this version's CPU build is on disk here; a bare "torch" would pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".${EXTRAS:-}"
