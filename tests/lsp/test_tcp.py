"""The server also listens on TCP (``--tcp HOST:PORT``): initialize over a socket and get an answer."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def message(payload: dict) -> bytes:
    body = json.dumps(payload).encode()
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def read_message(sock: socket.socket) -> dict:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    header, rest = data.split(b"\r\n\r\n", 1)
    length = int(next(line for line in header.split(b"\r\n") if line.startswith(b"Content-Length")).split(b":")[1])
    while len(rest) < length:
        rest += sock.recv(4096)
    result: dict = json.loads(rest[:length])
    return result


def test_initialize_over_tcp_advertises_inline_completion() -> None:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "lsp_server", "--tcp", f"127.0.0.1:{port}"],
                              stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=30)
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("server never listened")
        with sock:
            sock.sendall(message({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                                  "params": {"processId": None, "rootUri": None, "capabilities": {}}}))
            reply = read_message(sock)
        assert reply["id"] == 1
        assert reply["result"]["capabilities"]["inlineCompletionProvider"] is not None
        assert reply["result"]["serverInfo"]["name"] == "codellama-lsp"
    finally:
        server.kill()
        server.wait()
