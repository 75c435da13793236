"""Fixtures for tests against real serving engines: llama.cpp's llama-server built from source, GGUF conversions.

Other engine tests build on these:

* ``llama_server_bin -> Path`` (session): the built llama-server; fails (never skips) when it is missing, since
  scripts/test.sh builds it with scripts/install_llama_server.sh.
* ``llama_cpp_tree -> Path`` (session): the llama.cpp source tree it was built from (converter, gguf-py, models/).
* ``embedded_gguf -> Path`` (session): the embedded model as f32 GGUF with its FIM ids set, converted by
  scripts/convert_gguf.py once and cached under build/gguf/ by the sha256 of model.safetensors (and tokenizer.model).
* ``start_llama_server(gguf, *extra_args, parallel=1, ctx=4096, threads=2, timeout=60.0) -> LlamaServer``
  (function scope): starts llama-server on 127.0.0.1 with a free port and ``-c 4096 --parallel N -t 2 --metrics
  --slots``, waits for ``GET /health`` 200, returns ``LlamaServer(url, proc, log)``; every server it started is
  killed at the test's teardown.  For another lifetime use ``tests.engines.llama_server.launch``/``stop``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engines.llama_server import (
    EMBEDDED_WEIGHTS,
    LLAMA_CPP,
    LLAMA_SERVER,
    LlamaServer,
    LlamaServerError,
    StartLlamaServer,
    convert_cached,
    launch,
    stop,
)

BUILD_HINT = "run scripts/install_llama_server.sh (scripts/test.sh runs it before pytest)"


@pytest.fixture(scope="session")
def llama_cpp_tree() -> Path:
    if not (LLAMA_CPP / "convert_hf_to_gguf.py").is_file():
        pytest.fail(f"no llama.cpp tree at {LLAMA_CPP}: {BUILD_HINT}")
    return LLAMA_CPP


@pytest.fixture(scope="session")
def llama_server_bin(llama_cpp_tree: Path) -> Path:
    if not LLAMA_SERVER.is_file():
        pytest.fail(f"no llama-server at {LLAMA_SERVER}: {BUILD_HINT}")
    proc = subprocess.run([str(LLAMA_SERVER), "--version"], capture_output=True, text=True, check=False, timeout=30)
    if proc.returncode != 0:
        pytest.fail(f"{LLAMA_SERVER} --version failed (exit {proc.returncode}): {proc.stderr.strip()}; {BUILD_HINT}")
    return LLAMA_SERVER


@pytest.fixture(scope="session")
def embedded_gguf(llama_cpp_tree: Path) -> Path:
    try:
        return convert_cached(EMBEDDED_WEIGHTS, "f32")
    except LlamaServerError as e:
        pytest.fail(str(e))


@pytest.fixture
def start_llama_server(llama_server_bin: Path, tmp_path: Path) -> Iterator[StartLlamaServer]:
    started: list[LlamaServer] = []

    def start(
        gguf: Path,
        *extra_args: str,
        parallel: int = 1,
        ctx: int = 4096,
        threads: int = 2,
        timeout: float = 60.0,
    ) -> LlamaServer:
        try:
            server = launch(
                llama_server_bin,
                gguf,
                *extra_args,
                log_dir=tmp_path / "llama-server",
                parallel=parallel,
                ctx=ctx,
                threads=threads,
                timeout=timeout,
            )
        except LlamaServerError as e:
            pytest.fail(str(e))
        started.append(server)
        return server

    yield start
    for server in started:
        stop(server)
