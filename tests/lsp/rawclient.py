"""A raw-bytes LSP client for conformance, fuzz and fault tests: it speaks to the real server process over
stdio, frames strictly (exact ``Content-Length: N\\r\\n`` headers), and parses every frame with a strict JSON
parser (no NaN / Infinity), so a malformed frame from the server fails the test instead of being forgiven.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


class ProtocolViolation(AssertionError):
    """The server wrote something that is not a strict JSON-RPC frame."""


def _reject(name: str) -> Any:
    raise ProtocolViolation(f"non-JSON constant {name} on stdout")


def strict_loads(data: bytes) -> Any:
    return json.loads(data, parse_constant=_reject)


def frame(payload: Any) -> bytes:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


class RawServer:
    """``python -m lsp_server`` with pipes; every frame it writes is kept in ``messages``."""

    def __init__(self, env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> None:
        full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
        self.proc = subprocess.Popen([sys.executable, "-m", "lsp_server", "--log-level", "info", *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     cwd=ROOT, env=full_env)
        self.messages: list[dict[str, Any]] = []
        self.violations: list[str] = []
        self.stderr_lines: list[str] = []
        self.ids = itertools.count(1)
        self.sent_requests: dict[Any, str] = {}
        self._cond = threading.Condition()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    # -- reading --------------------------------------------------------------------------------------------
    def _read_stdout(self) -> None:
        out = self.proc.stdout
        assert out is not None
        while True:
            header = out.readline()
            if not header:
                break
            if not header.startswith(b"Content-Length: ") or not header.endswith(b"\r\n"):
                self.violations.append(f"bad header {header[:80]!r}")
                continue
            length = int(header[16:-2])
            rest = out.readline()
            if rest.startswith(b"Content-Type"):
                rest = out.readline()
            if rest != b"\r\n":
                self.violations.append(f"no blank line after the header: {rest[:80]!r}")
            body = out.read(length)
            try:
                message = strict_loads(body)
            except (ValueError, ProtocolViolation) as exc:
                self.violations.append(f"invalid JSON on stdout ({exc}): {body[:200]!r}")
                continue
            with self._cond:
                self.messages.append(message)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _read_stderr(self) -> None:
        err = self.proc.stderr
        assert err is not None
        for line in err:
            self.stderr_lines.append(line.decode("utf-8", "replace"))

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)

    # -- writing --------------------------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        stdin.write(data)
        stdin.flush()

    def send(self, payload: Any) -> None:
        self.write(frame(payload))

    def notify(self, method: str, params: Any) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def request_async(self, method: str, params: Any = None, msg_id: Any = None) -> Any:
        msg_id = next(self.ids) if msg_id is None else msg_id
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not None:
            message["params"] = params
        self.sent_requests[json.dumps(msg_id)] = method
        self.send(message)
        return msg_id

    def request(self, method: str, params: Any = None, msg_id: Any = None, timeout: float = 60) -> dict[str, Any]:
        """Send a request and wait for its response (the whole message: ``result`` or ``error``)."""
        msg_id = self.request_async(method, params, msg_id)
        return self.response(msg_id, timeout)

    def response(self, msg_id: Any, timeout: float = 60) -> dict[str, Any]:
        def answers(m: dict[str, Any]) -> bool:
            return "method" not in m and m.get("id") == msg_id and type(m.get("id")) is type(msg_id)

        return self.wait_for(answers, timeout, f"no response to id {msg_id!r}")

    def wait_for(self, pred: Any, timeout: float = 60, what: str = "message") -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for m in self.messages[seen:]:
                    if pred(m):
                        return m
                seen = len(self.messages)
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and seen == len(self.messages)):
                    raise AssertionError(f"{what} within {timeout} s; stderr tail:\n{self.stderr[-3000:]}")
                self._cond.wait(min(left, 0.5))

    def responses_to(self, msg_id: Any) -> list[dict[str, Any]]:
        with self._cond:
            return [m for m in self.messages if "method" not in m and m.get("id") == msg_id
                    and type(m.get("id")) is type(msg_id)]

    # -- a session ------------------------------------------------------------------------------------------
    def initialize(self, options: dict[str, Any] | None = None, root: Path | None = None,
                   capabilities: dict[str, Any] | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"processId": None, "capabilities": capabilities or {},
                                  "rootUri": root.as_uri() if root else None,
                                  "initializationOptions": options or {}}
        if root:
            params["workspaceFolders"] = [{"uri": root.as_uri(), "name": root.name}]
        answer = self.request("initialize", params)
        self.notify("initialized", {})
        return answer

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stats = self.request("codellama/stats", {})["result"]
            if stats["model_state"] != "loading":
                assert stats["model_state"] == "ready", stats
                return
            time.sleep(0.2)
        raise AssertionError("the model did not load")

    def open(self, uri: str, text: str, version: int = 1, language: str = "python") -> None:
        self.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": language,
                                                              "version": version, "text": text}})

    def complete(self, uri: str, line: int, character: int, kind: int = 1, timeout: float = 60) -> dict[str, Any]:
        return self.request("textDocument/inlineCompletion", completion_params(uri, line, character, kind),
                            timeout=timeout)

    def close(self, timeout: float = 30) -> int:
        """shutdown + exit; the exit code."""
        if self.proc.poll() is None:
            try:
                self.request("shutdown", timeout=timeout)
                self.notify("exit", None)
            except (AssertionError, BrokenPipeError, OSError):
                pass
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def vm_hwm_kb(self) -> int:
        """Peak resident memory of the server process (VmHWM)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM")

    # -- checks -------------------------------------------------------------------------------------------------
    def answer_counts(self) -> Counter[str]:
        with self._cond:
            return Counter(json.dumps(m.get("id")) for m in self.messages if "method" not in m)


def completion_params(uri: str, line: Any, character: Any, kind: int = 1) -> dict[str, Any]:
    return {"textDocument": {"uri": uri}, "position": {"line": line, "character": character},
            "context": {"triggerKind": kind}}
