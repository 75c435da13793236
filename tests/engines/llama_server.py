"""Paths of the llama.cpp build and a real llama-server process for engine tests (no mocks).

scripts/install_llama_server.sh unpacks llama.cpp (vendored in the llama-cpp-python sdist) and builds llama-server;
scripts/convert_gguf.py turns a Hugging Face Code Llama folder into GGUF.  The fixtures in conftest.py wrap these
helpers; tests that need another lifetime (one server per module, say) can call ``launch``/``stop`` directly.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple, Protocol

try:
    import httpx
except ImportError:  # huggingface_hub brings httpx2: the same client under another name
    import httpx2 as httpx  # type: ignore[no-redef]

__all__ = [
    "EMBEDDED_WEIGHTS",
    "LLAMA_CPP",
    "LLAMA_SERVER",
    "REPO",
    "LlamaServer",
    "LlamaServerError",
    "StartLlamaServer",
    "convert_cached",
    "httpx",
    "launch",
    "stop",
]

REPO = Path(__file__).resolve().parents[2]
LLAMA_CPP = REPO / "build" / "llama.cpp" / "src" / "vendor" / "llama.cpp"
LLAMA_SERVER = LLAMA_CPP / "build" / "bin" / "llama-server"
EMBEDDED_WEIGHTS = REPO / "model_backend" / "embedded" / "weights"
GGUF_CACHE = REPO / "build" / "gguf"


class LlamaServerError(Exception):
    """llama-server did not come up; the message carries the tail of its log."""


class LlamaServer(NamedTuple):
    """A running llama-server: ``url`` is its base URL (``http://127.0.0.1:PORT``), ``log`` its stdout+stderr."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class StartLlamaServer(Protocol):
    """The type of the ``start_llama_server`` fixture (conftest.py)."""

    def __call__(
        self,
        gguf: Path,
        *extra_args: str,
        parallel: int = 1,
        ctx: int = 4096,
        threads: int = 2,
        timeout: float = 60.0,
    ) -> LlamaServer: ...


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def convert_cached(model_dir: Path, outtype: str = "f32", cache: Path = GGUF_CACHE) -> Path:
    """GGUF of ``model_dir`` via scripts/convert_gguf.py, cached under build/gguf/ by the weights' sha256.

    The tokenizer's hash is part of the key too: the FIM ids written into the GGUF come from it.
    """
    key = f"{_sha256(model_dir / 'model.safetensors')[:16]}-tok{_sha256(model_dir / 'tokenizer.model')[:8]}"
    out = cache / f"{model_dir.parent.name}-{key}-{outtype}.gguf"
    if out.is_file():
        return out
    cmd = [
        sys.executable,
        str(REPO / "scripts" / "convert_gguf.py"),
        "--model",
        str(model_dir),
        "--outtype",
        outtype,
        "--out",
        str(out),
        "--llama-cpp",
        str(LLAMA_CPP),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not out.is_file():
        raise LlamaServerError(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return out


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def launch(
    binary: Path,
    gguf: Path,
    *extra_args: str,
    log_dir: Path,
    parallel: int = 1,
    ctx: int = 4096,
    threads: int = 2,
    timeout: float = 60.0,
) -> LlamaServer:
    """Start llama-server on 127.0.0.1 with a free port and wait until ``GET /health`` answers 200.

    Fixed flags: ``-c ctx --parallel N -t threads --metrics --slots``; ``extra_args`` are appended as given.
    A port taken between choosing and binding it is retried with another one.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    last_error = ""
    for attempt in range(3):
        port = _free_port()
        log = log_dir / f"llama-server-{port}-{attempt}.log"
        cmd = [
            str(binary),
            "-m",
            str(gguf),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "-c",
            str(ctx),
            "--parallel",
            str(parallel),
            "-t",
            str(threads),
            "--metrics",
            "--slots",
            *extra_args,
        ]
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        server = LlamaServer(f"http://127.0.0.1:{port}", proc, log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{server.url}/health", timeout=2.0).status_code == 200:
                    return server
            time.sleep(0.1)
        stop(server)
        last_error = f"llama-server ({' '.join(cmd)}) exited {proc.returncode}; log:\n{server.log_tail()}"
        if "bind" not in server.log_tail().lower():  # only a lost port race is worth another try
            break
    raise LlamaServerError(f"llama-server was not healthy within {timeout:.0f} s: {last_error}")


def stop(server: LlamaServer) -> None:
    """Terminate the server (SIGTERM, then SIGKILL after 10 s) and reap it."""
    if server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait(timeout=10)
