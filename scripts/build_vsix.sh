#!/usr/bin/env bash
# Build the VS Code extension's .vsix, offline: editors/vscode/dist/codellama-lsp-<version>.vsix.
#
# esbuild bundles src/ with vscode-languageclient into one file (out/extension.js), and vsce packages it with
# --no-dependencies: the .vsix holds that file, package.json, README.md and LICENSE, and no node_modules. One
# bundled file loads faster than a node_modules tree, and the package cannot pick up a devDependency by accident.
# `vsce package` runs the `vscode:prepublish` script (type check with tsc, then the esbuild bundle).
set -euo pipefail
cd "$(dirname "$0")/../editors/vscode"
if [ ! -e node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
fi
rm -rf out dist && mkdir dist
npx --no-install vsce package --no-dependencies --allow-missing-repository --out dist/ >/dev/null
ls dist/*.vsix
