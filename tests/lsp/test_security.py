"""Security over real LSP (issue 15): what the server reads, which sockets it opens, and that the API key stays
secret.

The real server runs with a ``sitecustomize.py`` first on its ``PYTHONPATH`` that installs ``sys.addaudithook``
and writes every ``open`` (the path) and every ``socket.connect`` to an IP address to a log file, so the checks
see the process's own file and network calls, not what the server says it did.  Each check has a positive control
(an inside file IS opened; a remote backend DOES connect), so a hook that recorded nothing could not pass.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from tests.lsp.rawclient import RawServer

HOOK = '''
import os, socket, sys, threading
_log = open(os.environ["CODELLAMA_AUDIT_LOG"], "a", buffering=1)
_lock = threading.Lock()
def _hook(event, args):
    if event == "open" and isinstance(args[0], (str, bytes)):
        line = "open " + os.fsdecode(args[0])
    elif event == "socket.connect" and args[0].family in (socket.AF_INET, socket.AF_INET6):
        line = "connect " + repr(args[1])
    else:
        return
    with _lock:
        _log.write(line.replace("\\n", " ") + "\\n")
sys.addaudithook(_hook)
'''

INSIDE = '''"""Inside the workspace."""


def inside_helper(count: int, label: str) -> str:
    """Format ``count`` with ``label``."""
    return f"{count} {label}"
'''
OUTSIDE = '''"""Outside the workspace: never to be read."""


def {name}(token: str) -> str:
    """Leak ``token``."""
    return token
'''
MAIN = '''from pkg.inside_mod import inside_helper
from linked_mod import linked_leak
from vendor.far_mod import vendored_leak
from ..dotdot_mod import dotdot_leak
from ...dotdot_mod import dotdot_leak_up


def report(items):
    total = len(items)
    return '''


def audited(tmp: Path) -> tuple[dict[str, str], Path]:
    """Environment for a server whose file opens and IP connects are logged to the returned path."""
    hook_dir = tmp / "hook"
    hook_dir.mkdir()
    (hook_dir / "sitecustomize.py").write_text(HOOK)
    log = tmp / "audit.log"
    log.write_text("")
    pythonpath = os.pathsep.join(p for p in (str(hook_dir), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": pythonpath, "CODELLAMA_AUDIT_LOG": str(log)}, log


def events(log: Path, kind: str) -> list[str]:
    return [line[len(kind) + 1:] for line in log.read_text().splitlines() if line.startswith(kind + " ")]


def outside_workspace(tmp: Path) -> tuple[Path, Path]:
    """A workspace ``tmp/ws`` whose imports reach files outside it through symlinks and ``..``."""
    ws, outside = tmp / "ws", tmp / "outside"
    (ws / "pkg").mkdir(parents=True)
    (ws / "app").mkdir()
    outside.mkdir()
    (ws / "pkg" / "__init__.py").write_text("")
    (ws / "pkg" / "inside_mod.py").write_text(INSIDE)
    (outside / "linked_target.py").write_text(OUTSIDE.format(name="linked_leak"))
    (ws / "linked_mod.py").symlink_to(outside / "linked_target.py")  # a file symlink out of the workspace
    (outside / "vendor").mkdir()
    (outside / "vendor" / "far_mod.py").write_text(OUTSIDE.format(name="vendored_leak"))
    (ws / "vendor").symlink_to(outside / "vendor", target_is_directory=True)  # a folder symlink out of it
    # from app/main.py, ``..`` is the workspace folder (inside) and ``...`` the folder above it (outside)
    (ws / "dotdot_mod.py").write_text(INSIDE.replace("inside_helper", "dotdot_leak"))
    (tmp / "dotdot_mod.py").write_text(OUTSIDE.format(name="dotdot_leak_up"))
    return ws, outside


def resolved(path: str) -> str:
    return os.path.realpath(path)


def test_no_read_outside_the_workspace_and_no_network_with_the_local_backend(tmp_path: Path) -> None:
    tmp = tmp_path.resolve()
    env, log = audited(tmp)
    ws, outside = outside_workspace(tmp)
    server = RawServer(env=env)
    try:
        server.initialize({"crossFileContext": True, "timeBudgetMs": 5000}, root=ws)
        server.wait_ready()
        uri = (ws / "app" / "main.py").as_uri()
        server.open(uri, MAIN)
        lines = MAIN.split("\n")
        answer = server.complete(uri, len(lines) - 1, len(lines[-1]), kind=1)
        assert "result" in answer, answer
        prompt = server.request("codellama/lastPrompt", {})["result"]
    finally:
        server.close()

    opened = [resolved(p) for p in events(log, "open")]
    # positive control: the imported module inside the workspace was read from disk, and it reached the prompt
    assert str(ws / "pkg" / "inside_mod.py") in opened, [p for p in opened if p.startswith(str(tmp))]
    assert "def inside_helper(count: int, label: str) -> str:" in prompt["text"]
    # nothing outside: not through the symlinked file, the symlinked folder, or ``..`` past the workspace folder
    leaked = [p for p in opened if p.startswith(str(tmp) + os.sep) and not p.startswith(str(ws) + os.sep)
              and not p.startswith(str(tmp / "hook")) and p != str(log)]
    assert leaked == [], leaked
    assert not [p for p in opened if p.startswith(str(outside) + os.sep)]
    for name in ("linked_leak", "vendored_leak", "dotdot_leak_up"):
        assert f"def {name}(" not in prompt["text"], name
    # no connection to an IP address at all with the local backend (only pipes)
    assert events(log, "connect") == []
    assert server.stderr.count("Traceback") == 0


def test_a_remote_backend_does_connect_positive_control(tmp_path: Path) -> None:
    """The same hook records the connection a remote backend makes (port 9: refused, nothing listens)."""
    env, log = audited(tmp_path)
    server = RawServer(env=env)
    try:
        server.initialize({"backend": "llama.cpp", "endpoint": "http://127.0.0.1:9", "timeBudgetMs": 2000})
        uri = "file:///work/remote.py"
        server.open(uri, "def add(a, b):\n    return ")
        deadline = time.monotonic() + 60
        while not events(log, "connect") and time.monotonic() < deadline:
            assert "result" in server.complete(uri, 1, 11, kind=1)
            time.sleep(0.5)
    finally:
        server.close()
    assert any("127.0.0.1" in c and ", 9)" in c for c in events(log, "connect")), events(log, "connect")


def test_the_api_key_is_never_logged_nor_sent_to_the_client() -> None:
    secret = "sk-secret-123"
    server = RawServer(env={"CODELLAMA_TEST_KEY": secret}, args=("--log-level", "debug"))
    seen: list[Any] = []
    try:
        server.initialize({"backend": "openai", "endpoint": "http://127.0.0.1:9", "apiKeyEnv": "CODELLAMA_TEST_KEY",
                           "timeBudgetMs": 2000})
        uri = "file:///work/keyed.py"
        server.open(uri, "def add(a, b):\n    return ")
        for kind in (1, 2, 1):
            seen.append(server.complete(uri, 1, 11, kind=kind))
        seen.append(server.request("codellama/stats", {}))
        seen.append(server.request("codellama/lastPrompt", {}))
        server.notify("workspace/didChangeConfiguration", {"settings": {"apiKeyEnv": "CODELLAMA_TEST_KEY",
                                                                        "maxNewTokens": 16}})
        seen.append(server.complete(uri, 1, 11, kind=1))
    finally:
        server.close()
    stats = seen[3]["result"]
    assert stats["backend"] == "openai", stats  # the settings took effect: the key was in use
    assert all("result" in answer for answer in seen), seen
    assert secret not in server.stderr
    everything = json.dumps(server.messages)
    assert secret not in everything, [m for m in server.messages if secret in json.dumps(m)]
