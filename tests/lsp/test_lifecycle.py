"""The server never outlives its editor: it exits when its client goes away."""

from __future__ import annotations

import json
import subprocess
import sys


def frame(payload: dict) -> bytes:
    body = json.dumps(payload).encode()
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def test_server_exits_when_the_client_closes_its_pipe() -> None:
    server = subprocess.Popen([sys.executable, "-m", "lsp_server"], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert server.stdin is not None
    server.stdin.write(frame({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                              "params": {"processId": None, "rootUri": None, "capabilities": {}}}))
    server.stdin.write(frame({"jsonrpc": "2.0", "method": "initialized", "params": {}}))
    server.stdin.flush()
    server.stdin.close()  # the editor went away without shutdown/exit (crash, kill -9)
    try:
        assert server.wait(timeout=60) is not None
    finally:
        server.kill()


def test_server_exits_after_shutdown_and_exit() -> None:
    server = subprocess.Popen([sys.executable, "-m", "lsp_server"], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert server.stdin is not None
    for message in ({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                     "params": {"processId": None, "rootUri": None, "capabilities": {}}},
                    {"jsonrpc": "2.0", "method": "initialized", "params": {}},
                    {"jsonrpc": "2.0", "id": 2, "method": "shutdown"},
                    {"jsonrpc": "2.0", "method": "exit"}):
        server.stdin.write(frame(message))
    server.stdin.flush()
    try:
        assert server.wait(timeout=60) == 0
    finally:
        server.kill()
