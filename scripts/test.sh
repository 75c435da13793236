#!/usr/bin/env bash
# Set up (if needed) and run every check: lint, types, unit and end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="[test]" scripts/setup.sh
export HF_HUB_OFFLINE=1
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/python -m pytest -q "$@"
