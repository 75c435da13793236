"""JSON-RPC and LSP conformance at the protocol edge, spoken in raw bytes to the real server process.

One test per defect of issue 15.  Every frame the server writes is parsed strictly (``rawclient``), so an
``Infinity`` or a broken header fails whichever test caused it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator

import pytest
from pygls.exceptions import JsonRpcInvalidParams

from lsp_server import protocol
from lsp_server.handlers import SERVER
from tests.lsp.rawclient import RawServer, completion_params, frame

URI = "file:///work/conf.py"
TEXT = "def add(a, b):\n    return a\n\nclass Box:\n    \n"


@pytest.fixture(scope="module")
def server() -> Iterator[RawServer]:
    s = RawServer()
    s.initialize()
    s.open(URI, TEXT)
    yield s
    s.kill()


def error_of(answer: dict) -> int:
    assert "error" in answer, answer
    return int(answer["error"]["code"])


def alive(s: RawServer) -> None:
    assert "result" in s.request("codellama/stats", {}, timeout=30)


def no_traceback(s: RawServer) -> None:
    assert "Traceback" not in s.stderr, s.stderr[-3000:]
    assert not s.violations, s.violations


def null_id_errors(s: RawServer) -> list[dict]:
    return [m for m in s.messages if "method" not in m and m.get("id") is None]


def wait_null_errors(s: RawServer, count: int, timeout: float = 20) -> list[dict]:
    deadline = time.monotonic() + timeout
    while len(null_id_errors(s)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return null_id_errors(s)


def test_method_not_a_string_is_invalid_request_without_traceback(server: RawServer) -> None:
    for i, method in enumerate((5, ["a"])):
        server.send({"jsonrpc": "2.0", "id": f"m{i}", "method": method})
        answer = server.response(f"m{i}")
        assert error_of(answer) == -32600
        assert "data" not in answer["error"] or not answer["error"]["data"]
        assert "Traceback" not in json.dumps(answer)
    no_traceback(server)


def test_infinite_id_is_never_echoed_as_infinity(server: RawServer) -> None:
    before = len(null_id_errors(server))
    server.write(frame(b'{"jsonrpc": "2.0", "id": 1e999, "method": "codellama/stats", "params": {}}'))
    errors = wait_null_errors(server, before + 1)
    assert errors[before]["error"]["code"] in (-32700, -32600)
    alive(server)
    no_traceback(server)  # includes: every stdout frame parsed without NaN/Infinity


def test_nested_jsonrpc_objects_in_params_are_plain_data(server: RawServer) -> None:
    nested = {"jsonrpc": "2.0", "id": "outer", "method": "textDocument/didOpen", "params": 5}
    answer = server.request("codellama/stats", {"x": nested}, msg_id="outer")
    assert "result" in answer
    time.sleep(0.5)
    assert len(server.responses_to("outer")) == 1  # never a second answer to the nested copy of the id
    answer = server.request("codellama/stats", {"x": {"jsonrpc": "2.0", "method": "textDocument/didOpen",
                                                      "params": 5}}, msg_id="outer2")
    assert "result" in answer
    no_traceback(server)


@pytest.mark.parametrize("line, character", [(1.5, 0), ("0", 0), (0, 2.0), (True, 0), (-1, 0)])
def test_non_integer_positions_are_invalid_params(server: RawServer, line: object, character: object) -> None:
    answer = server.request("textDocument/inlineCompletion", completion_params(URI, line, character))
    assert error_of(answer) == -32602
    no_traceback(server)


def test_a_batch_gets_one_invalid_request_with_null_id(server: RawServer) -> None:
    before = len(null_id_errors(server))
    server.write(frame([{"jsonrpc": "2.0", "id": "b1", "method": "codellama/stats"},
                        {"jsonrpc": "2.0", "id": "b2", "method": "codellama/stats"}]))
    errors = wait_null_errors(server, before + 1)
    assert errors[before]["error"]["code"] == -32600
    time.sleep(0.3)
    assert len(null_id_errors(server)) == before + 1
    assert not server.responses_to("b1") and not server.responses_to("b2")
    no_traceback(server)


def test_cancel_with_a_list_id_is_harmless(server: RawServer) -> None:
    server.notify("$/cancelRequest", {"id": [1]})
    server.notify("$/cancelRequest", {"id": {"n": 1}})
    alive(server)
    assert "unhashable" not in server.stderr
    no_traceback(server)


@pytest.mark.parametrize("raw", [
    b'{"jsonrpc": "2.0", "id": true, "method": "codellama/stats", "params": {}}',
    b'{"jsonrpc": "2.0", "id": null, "method": "codellama/stats", "params": {}}',
    b'{"jsonrpc": "2.0", "id": [7], "method": "codellama/stats", "params": {}}',
    b'{"jsonrpc": "2.0", "id": {"n": 1}, "method": "codellama/stats", "params": {}}',
    b'{"jsonrpc": "2.0", "id": 1.5, "method": "codellama/stats", "params": {}}',
    b'{"id": 77001, "method": "codellama/stats", "params": {}}',
    b'{"jsonrpc": "1.0", "id": 77002, "method": "codellama/stats", "params": {}}',
])
def test_bad_ids_and_missing_jsonrpc_get_invalid_request_with_null_id(server: RawServer, raw: bytes) -> None:
    before = len(null_id_errors(server))
    server.write(frame(raw))
    errors = wait_null_errors(server, before + 1)
    assert errors[before]["error"]["code"] == -32600
    assert not server.responses_to(77001) and not server.responses_to(77002)
    no_traceback(server)


def test_huge_content_length_is_refused_and_the_server_stays_up(server: RawServer) -> None:
    server.write(b"Content-Length: 1000000000000\r\n\r\n")
    alive(server)
    server.write(b"Content-Length: 100000000000000000000\r\n\r\n")
    alive(server)
    assert server.proc.poll() is None
    no_traceback(server)


def test_a_32_mib_header_line_is_not_buffered_whole(server: RawServer) -> None:
    server.wait_ready()  # the model's own load must not count as the line's memory
    rss_before = server.vm_hwm_kb()
    chunk = b"X" * (1 << 20)
    for _ in range(32):
        server.write(chunk)
    server.write(b"\r\n")
    alive(server)
    assert server.vm_hwm_kb() - rss_before < 16 * 1024  # far less than the 32 MiB line
    no_traceback(server)


def test_unknown_method_and_bad_params_shape(server: RawServer) -> None:
    assert error_of(server.request("codellama/nothing", {})) == -32601
    server.send({"jsonrpc": "2.0", "id": "p5", "method": "codellama/stats", "params": 5})
    assert error_of(server.response("p5")) == -32602
    no_traceback(server)


def test_unknown_document_and_far_position_are_invalid_params_without_traceback(server: RawServer) -> None:
    answer = server.request("textDocument/inlineCompletion", completion_params("file:///nowhere.py", 0, 0))
    assert error_of(answer) == -32602 and "not open" in answer["error"]["message"]
    assert error_of(server.complete(URI, 400, 0)) == -32602
    no_traceback(server)


def test_position_past_the_end_of_a_line_is_clamped(server: RawServer) -> None:
    """Decision (LSP 3.17): a character past the line's end means the line's end; any range is there."""
    answer = server.complete(URI, 1, 500)
    assert "result" in answer, answer
    for item in answer["result"]["items"]:
        rng = item["range"]
        assert rng["start"] == {"line": 1, "character": len("    return a")}
    no_traceback(server)


@pytest.mark.parametrize("header", [
    b"content-length: %d\r\n\r\n",
    b"Content-Length:    %d   \r\n\r\n",
    b"Content-Length: %d\n\n",
    b"CONTENT-LENGTH:%d\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n",
])
def test_header_variants_are_understood(server: RawServer, header: bytes) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": "hv", "method": "codellama/stats", "params": {}}).encode()
    before = len(server.responses_to("hv"))
    server.write(header % len(body) + body)
    deadline = time.monotonic() + 20
    while len(server.responses_to("hv")) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(server.responses_to("hv")) == before + 1
    no_traceback(server)


@pytest.mark.parametrize("garbage", [
    b"Content-Length: %d\r\n\r\n" % 60 + b'{"jsonrpc": "2.0", "method": "codellama/stats"}',  # too long by ~10
    b"Content-Length: 30\r\n\r\n" + b'{"jsonrpc": "2.0", "id": "short", "method": "codellama/stats"}',  # too short
    b'{"jsonrpc": "2.0", "id": "nohdr", "method": "codellama/stats"}\r\n',  # no header at all
    bytes(range(256)) * 256,  # 64 KiB of binary
])
def test_framing_garbage_then_the_next_valid_frame_is_answered(server: RawServer, garbage: bytes) -> None:
    server.write(garbage)
    answer = server.request("codellama/stats", {}, timeout=30)
    assert "result" in answer
    assert server.proc.poll() is None
    no_traceback(server)


def test_lifecycle_before_initialize_after_shutdown_and_exit_codes() -> None:
    s = RawServer()
    try:
        assert error_of(s.request("codellama/stats", {})) == -32002
        s.initialize()
        assert error_of(s.request("initialize", {"processId": None, "capabilities": {}, "rootUri": None})) == -32600
        assert "result" in s.request("shutdown")
        assert error_of(s.request("codellama/stats", {})) == -32600
        s.notify("exit", None)
        assert s.proc.wait(timeout=30) == 0
        no_traceback(s)
    finally:
        s.kill()
    s = RawServer()
    try:
        s.initialize()
        s.notify("exit", None)  # exit without shutdown: LSP says exit code 1
        assert s.proc.wait(timeout=30) == 1
    finally:
        s.kill()


def test_end_of_input_stops_the_server() -> None:
    s = RawServer()
    try:
        s.initialize()
        s.write(b"Content-Length: 100\r\n\r\n{\"half")
        assert s.proc.stdin is not None
        s.proc.stdin.close()
        assert s.proc.wait(timeout=30) is not None
        no_traceback(s)
    finally:
        s.kill()


# -- the pygls internals the edge relies on (each fails if pygls changes under us) ----------------------------
def test_pygls_hooks_the_edge_relies_on_still_exist() -> None:
    p = SERVER.protocol
    assert callable(p.handle_message) and callable(p.get_message_type) and callable(p.set_writer)
    assert "textDocument/didOpen" in p.fm.features and "initialize" in p.fm.builtin_features
    assert "codellama.explain" in p.fm.commands
    assert p.msg_id is None  # the contextvar-backed property commands use for $/cancelRequest
    import pygls.protocol.json_rpc as json_rpc

    assert json_rpc.logger.name == protocol.PYGLS_LOGGER  # whose already-answered tracebacks we filter


def test_the_log_filter_drops_only_errors_already_answered() -> None:
    f = protocol._AnsweredFilter()

    def record(exc: BaseException) -> logging.LogRecord:
        return logging.LogRecord("pygls", logging.ERROR, __file__, 1, "x", (), (type(exc), exc, None))

    assert not f.filter(record(JsonRpcInvalidParams("bad position")))
    assert f.filter(record(RuntimeError("a real bug keeps its traceback")))
