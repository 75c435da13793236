#!/usr/bin/env bash
# Build llama.cpp's llama-server from source (for tests/engines), idempotently.
#
# Debian has no llama.cpp package and nothing outside the package registries can be fetched, so the source comes
# from PyPI: the llama-cpp-python sdist vendors the whole llama.cpp tree (sources, convert_hf_to_gguf.py, gguf-py/,
# models/ggml-vocab-*.gguf). Only the llama-server target is built (10-25 minutes on 2 cores).
#
# Layout (stable paths that tests/engines and scripts/convert_gguf.py rely on):
#   build/llama.cpp/src/vendor/llama.cpp                        the llama.cpp tree
#   build/llama.cpp/src/vendor/llama.cpp/build/bin/llama-server the binary (its .so files lie beside it)
#
# gguf: convert_hf_to_gguf.py and gguf_new_metadata.py put their own tree's gguf-py first on sys.path, so the
# conversion always uses the gguf code it was written with. The tests only read GGUF metadata (GGUFReader); for them
# .venv gets PyPI's gguf pinned to the version of the tree's gguf-py/pyproject.toml (0.19.0 in llama-cpp-python
# 0.3.36), so both agree on the file format. Bump GGUF_VERSION together with VERSION.
#
# GGML_NATIVE=ON tunes the binary to the CPU that builds it: a build copied to another machine kind may need OFF.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=0.3.36
GGUF_VERSION=0.19.0
ROOT=build/llama.cpp
TREE=$ROOT/src/vendor/llama.cpp
BIN=$TREE/build/bin/llama-server
PY=.venv/bin/python

if ! { [ -x "$BIN" ] && "$BIN" --version >/dev/null 2>&1; }; then
    if [ ! -f "$TREE/CMakeLists.txt" ]; then
        mkdir -p "$ROOT/dl"
        sdist=$ROOT/dl/llama_cpp_python-$VERSION.tar.gz
        [ -f "$sdist" ] || "$PY" -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$ROOT/dl"
        rm -rf "$ROOT/src.tmp" && mkdir -p "$ROOT/src.tmp"
        tar xzf "$sdist" -C "$ROOT/src.tmp" --strip-components=1
        rm -rf "$ROOT/src" && mv "$ROOT/src.tmp" "$ROOT/src"
    fi
    cmake -S "$TREE" -B "$TREE/build" -DLLAMA_BUILD_SERVER=ON -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
        -DCMAKE_BUILD_TYPE=Release >"$ROOT/cmake-configure.log" 2>&1 \
        || { tail -n 40 "$ROOT/cmake-configure.log"; exit 1; }
    cmake --build "$TREE/build" --target llama-server -j2 >"$ROOT/cmake-build.log" 2>&1 \
        || { tail -n 40 "$ROOT/cmake-build.log"; exit 1; }
    "$BIN" --version >/dev/null 2>&1 || { echo "built $BIN does not run --version" >&2; exit 1; }
fi

have=$("$PY" -c 'import importlib.metadata as m; print(m.version("gguf"))' 2>/dev/null || true)
[ "$have" = "$GGUF_VERSION" ] || "$PY" -m pip install -q "gguf==$GGUF_VERSION"

echo "llama-server: $BIN"
