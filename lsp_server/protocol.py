"""The JSON-RPC edge: framing, envelope checks, lifecycle rules, and every place we lean on pygls internals.

Why our own transport: pygls' reader (``pygls.io_.run_async``) trusts the stream.  It allocates whatever
``Content-Length`` says, buffers a header line of any size, goes out of step for good after one bad frame,
turns every nested JSON object that looks like a message into a message (``object_hook``), and answers some
invalid messages twice or never.  Here the bytes are framed with bounds and resynchronised, each body is
parsed by a strict JSON parser, the envelope is checked (JSON-RPC 2.0 and the LSP lifecycle), and only a
well-formed message is handed to pygls' public ``handle_message``.  So:

* every request is answered exactly once: a result, or an error with the right code (-32700 parse, -32600
  invalid request, -32601 unknown method, -32602 bad params, -32002 not initialized, -32800 cancelled);
* a notification is never answered, and no response goes to an id that was not a request's;
* a client's mistake is one log line, never a traceback, and never a traceback in ``error.data``.

What we still rely on in pygls (each covered by ``tests/lsp/test_conformance.py``): ``handle_message``,
``structure_message`` (responses only), ``get_message_type``, ``set_writer``, ``fm.features`` /
``fm.builtin_features`` / ``fm.commands``, ``msg_id``, and the name of the logger
``pygls.protocol.json_rpc`` whose lines about errors we already answered are filtered out.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import math
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

import cattrs
from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcException, JsonRpcInternalError
from pygls.protocol import JsonRPCNotification, JsonRPCRequestMessage, JsonRPCResponseMessage, default_converter

from model_backend.errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    SERVER_NOT_INITIALIZED,
    CodeLlamaError,
)

if TYPE_CHECKING:
    from pygls.server import JsonRPCServer

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

MAX_HEADER_LINE = 8 * 1024  # bytes; a longer header line is dropped (a real one is ~40 bytes)
MAX_BODY = 256 * 1024 * 1024  # bytes; a larger Content-Length is refused (a 5 MB document is ~6 MB of JSON)
READ_CHUNK = 64 * 1024
PYGLS_LOGGER = "pygls.protocol.json_rpc"  # where pygls logs (with tracebacks) the errors we raise on purpose
_CONTENT_LENGTH = re.compile(rb"content-length[ \t]*:", re.IGNORECASE)
_HEADER = re.compile(rb"^[ \t]*([A-Za-z][A-Za-z0-9-]*)[ \t]*:[ \t]*(.*?)[ \t]*$")


# -- framing ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Body:
    """One frame's body (not yet parsed)."""

    data: bytes


@dataclass(frozen=True)
class Dropped:
    """Bytes that were not a frame (the log says why); the stream goes on at the next header."""

    why: str


class Framer:
    """Splits a byte stream into ``Content-Length`` frames, with bounds, resynchronising after garbage.

    Lenient where clients differ (header names in any case, spaces around values, LF-only line ends), strict
    where memory is at stake (header lines over ``MAX_HEADER_LINE``, bodies over ``MAX_BODY``).  Bytes that are
    not part of a frame are skipped up to the next ``Content-Length`` header, wherever it starts on a line.
    """

    def __init__(self, max_body: int = MAX_BODY, max_header_line: int = MAX_HEADER_LINE) -> None:
        self.max_body, self.max_header_line = max_body, max_header_line
        self._buf = bytearray()
        self._length: int | None = None  # from the headers read so far
        self._in_body = False
        self._skipping = False  # inside an over-long header line, until its end

    def feed(self, data: bytes) -> Iterator[Body | Dropped]:
        """Add bytes; yield every frame (or dropped piece) now complete."""
        self._buf += data
        while True:
            if self._in_body:
                assert self._length is not None
                if len(self._buf) < self._length:
                    return
                body = bytes(self._buf[:self._length])
                del self._buf[:self._length]
                self._in_body, self._length = False, None
                yield Body(body)
                continue
            end = self._buf.find(b"\n")
            if end < 0:
                if len(self._buf) > self.max_header_line:
                    keep = self._buf[-64:]  # a header may have started at the end
                    cut = len(self._buf) - len(keep)
                    del self._buf[:cut]
                    if not self._skipping:
                        self._skipping = True
                        self._length = None
                        yield Dropped(f"a header line over {self.max_header_line} bytes")
                return
            line = bytes(self._buf[:end]).rstrip(b"\r")
            del self._buf[:end + 1]
            if self._skipping:
                self._skipping = False
                line = self._from_header(line)
            dropped = self._header_line(line)
            if dropped is not None:
                yield dropped

    def _header_line(self, line: bytes) -> Dropped | None:
        if not line.strip():
            if self._length is None:
                return None  # blank lines between frames
            if self._length > self.max_body:
                length, self._length = self._length, None
                return Dropped(f"Content-Length {length} is over the {self.max_body}-byte limit")
            self._in_body = True
            return None
        match = _HEADER.match(line)
        if match is None or (match.group(1).lower() != b"content-length" and self._length is None
                             and _CONTENT_LENGTH.search(line)):
            line = self._from_header(line)  # garbage, then a header on the same line (a frame cut short)
            match = _HEADER.match(line)
            if match is None:
                self._length = None
                return Dropped(f"{len(line)} bytes that are not a header")
        name, value = match.group(1).lower(), match.group(2)
        if name != b"content-length":
            return None  # Content-Type and unknown headers are ignored
        if not value.isdigit() or len(value) > 20:
            self._length = None
            return Dropped(f"a Content-Length that is not a number: {value[:40]!r}")
        self._length = int(value)
        return None

    @staticmethod
    def _from_header(line: bytes) -> bytes:
        found = _CONTENT_LENGTH.search(line)
        return line[found.start():] if found else b""

    def push_back(self, data: bytes) -> None:
        """Return bytes a too-long frame took from the next one (see ``parse_body``)."""
        self._buf[:0] = data


# -- parsing and the envelope ------------------------------------------------------------------------------
class RpcError(Exception):
    """An error answer the edge sends itself: code, message, and the id to answer (None: ``null``)."""

    def __init__(self, code: int, message: str, msg_id: int | str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.msg_id = code, message, msg_id


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def parse_body(body: bytes) -> tuple[Any, bytes]:
    """(JSON value, bytes after it that belong to the next frame).  Raises ``RpcError`` (-32700).

    A body followed by the start of another header means the Content-Length was too long: the value is
    used and the rest goes back to the framer, so the next frame is not lost.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RpcError(PARSE_ERROR, f"parse error: the body is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        start = len(text) - len(text.lstrip())
        value, end = _DECODER.raw_decode(text, start)
    except (ValueError, RecursionError) as exc:
        raise RpcError(PARSE_ERROR, f"parse error: {str(exc)[:200]}") from None
    rest = text[end:].lstrip()
    if rest:
        head = rest[:15].lower()
        if not ("content-length:".startswith(head) or head.startswith("content-length")):
            raise RpcError(PARSE_ERROR, "parse error: extra data after the JSON value")
        return value, rest.encode("utf-8")  # the start of the next frame's header
    return value, b""


def _valid_id(value: Any) -> bool:
    return type(value) in (int, str)


@dataclass(frozen=True)
class Incoming:
    """A message whose envelope is valid JSON-RPC 2.0."""

    kind: str  # "request", "notification", "response"
    raw: dict[str, Any]

    @property
    def method(self) -> str:
        return str(self.raw.get("method", ""))

    @property
    def id(self) -> Any:
        return self.raw.get("id")


def check_envelope(msg: Any) -> Incoming:
    """Classify a parsed message; raise ``RpcError`` (-32600, or -32602 for params) for one that is not valid."""
    if isinstance(msg, list):
        raise RpcError(INVALID_REQUEST, "invalid request: batches (JSON arrays) are not supported; "
                                        "send one message per frame")
    if not isinstance(msg, dict):
        raise RpcError(INVALID_REQUEST, "invalid request: a message must be a JSON object")
    has_id = "id" in msg
    msg_id = msg.get("id")
    id_ok = _valid_id(msg_id)
    reply_to = msg_id if id_ok else None
    if msg.get("jsonrpc") != "2.0":
        raise RpcError(INVALID_REQUEST, 'invalid request: "jsonrpc" must be "2.0"')
    if "method" in msg:
        if has_id and not id_ok:
            raise RpcError(INVALID_REQUEST, "invalid request: an id must be an integer or a string")
        if not isinstance(msg["method"], str):
            raise RpcError(INVALID_REQUEST, 'invalid request: "method" must be a string', reply_to)
        params = msg.get("params")
        if params is not None and not isinstance(params, dict | list):  # null is taken as absent (LSP's void)
            if not has_id:
                raise RpcError(INVALID_REQUEST, "invalid notification: params must be an object or an array")
            raise RpcError(INVALID_PARAMS, "invalid params: params must be an object or an array", reply_to)
        return Incoming("request" if has_id else "notification", msg)
    if has_id and ("result" in msg) != ("error" in msg):
        if not id_ok:
            raise RpcError(INVALID_REQUEST, "invalid response: an id must be an integer or a string")
        return Incoming("response", msg)
    raise RpcError(INVALID_REQUEST, 'invalid request: a message needs a "method" (or an "id" and a '
                                    '"result" or "error")', reply_to)


# -- types ---------------------------------------------------------------------------------------------------
def strict_converter() -> cattrs.Converter:
    """pygls' converter, with ``int``, ``bool`` and ``str`` fields that no longer accept ``1.5``, ``"0"`` or ``5``.

    cattrs' defaults call ``int(value)`` and ``str(value)``, so a position ``{"line": 1.5}`` became line 1.
    """
    converter = default_converter()

    def strict_int(value: Any, target: type) -> Any:
        if type(value) is not int:
            raise TypeError(f"expected an integer, got {json.dumps(value)[:40]}")
        return value if target is int else target(value)  # an IntEnum: its members only

    def strict_str(value: Any, target: type) -> Any:
        if type(value) is not str:
            raise TypeError(f"expected a string, got {json.dumps(value)[:40]}")
        return value if target is str else target(value)

    def strict_bool(value: Any, _: type) -> bool:
        if type(value) is not bool:
            raise TypeError(f"expected true or false, got {json.dumps(value)[:40]}")
        return value

    converter.register_structure_hook(int, strict_int)
    converter.register_structure_hook(bool, strict_bool)  # bool is an int subclass: it needs its own
    converter.register_structure_hook(str, strict_str)
    return converter


def describe_structure_error(exc: BaseException, path: tuple[str, ...] = ()) -> str:
    """The first leaf error of a cattrs failure, with its path (``params.position.line: expected an integer``)."""
    if isinstance(exc, cattrs.ClassValidationError | cattrs.IterableValidationError):
        for sub in exc.exceptions:
            step = ""
            for note in getattr(sub, "__notes__", []):
                if "@ attribute " in note:
                    step = note.rsplit("@ attribute ", 1)[1]
                elif "@ index " in note:
                    step = note.rsplit("@ index ", 1)[1]
            return describe_structure_error(sub, (*path, step) if step else path)
    where = ".".join(path)
    if isinstance(exc, KeyError):
        return f"{where}: missing field {exc}" if where else f"missing field {exc}"
    text = str(exc)[:200] or type(exc).__name__
    return f"{where}: {text}" if where else text


# -- errors raised by handlers -----------------------------------------------------------------------------
def to_rpc_exception(exc: BaseException, method: str) -> JsonRpcException:
    """The one mapping from a handler's exception to what the client receives (never a traceback)."""
    if isinstance(exc, JsonRpcException):
        exc.data = None
        return exc
    if isinstance(exc, CodeLlamaError):
        return JsonRpcException(code=exc.code, message=exc.message)
    return JsonRpcInternalError(f"internal error in {method}: {type(exc).__name__}: {str(exc)[:300]}")


def guard(method: str, fn: F) -> F:
    """Wrap a handler so every error leaves it as a clean JSON-RPC error, logged once.

    A client's mistake (bad position, unknown document, bad arguments) is one log line; a server fault is
    logged with its traceback (it is a bug), and the client gets its message without the traceback.
    Notification handlers never raise: there is nobody to answer.
    """

    notification = is_notification(method)

    def fail(exc: Exception) -> JsonRpcException:
        mapped = to_rpc_exception(exc, method)
        if mapped.code == INTERNAL_ERROR and not isinstance(exc, JsonRpcException | CodeLlamaError):
            log.exception("%s failed", method)
        else:
            log.warning("%s: %s", method, mapped.message)
        return mapped

    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def guarded_async(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = fail(exc)
                if notification:
                    return None
                raise error from None

        return guarded_async  # type: ignore[return-value]

    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            error = fail(exc)
            if notification:
                return None
            raise error from None

    return guarded  # type: ignore[return-value]


def is_notification(method: str) -> bool:
    """Whether ``method`` is an LSP notification (custom methods are requests)."""
    message_type = lsp.METHOD_TO_TYPES.get(method, (None,))[0]
    return message_type is not None and message_type.__name__.endswith("Notification")


class _AnsweredFilter(logging.Filter):
    """Drops pygls' traceback lines for errors we raised on purpose: ``guard`` logged them, once."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not ((isinstance(exc, JsonRpcException) and exc.code != INTERNAL_ERROR)
                    or (isinstance(exc, JsonRpcInternalError) and exc.data is None))


_FILTER = _AnsweredFilter()


def install_log_filter() -> None:
    logger = logging.getLogger(PYGLS_LOGGER)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)


# -- writing ---------------------------------------------------------------------------------------------------
class FrameWriter:
    """pygls' writer interface over a binary stream: one lock, flushed frames, and a closed pipe is not a crash."""

    def __init__(self, stream: BinaryIO | _SocketStream) -> None:
        self.stream, self.closed = stream, False
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self._lock:
            if self.closed:
                return
            try:
                self.stream.write(data)
                self.stream.flush()
            except (BrokenPipeError, ConnectionError, OSError, ValueError) as exc:
                self.closed = True
                log.warning("the client's end of the pipe is closed (%s); stopping", exc)

    def close(self) -> None:
        with self._lock:
            self.closed = True


# -- the edge ----------------------------------------------------------------------------------------------------
class Edge:
    """Checks every message and hands the valid ones to pygls; answers the rest itself.

    Lifecycle (LSP): before ``initialize`` a request gets -32002 and a notification is dropped; after
    ``shutdown`` a request gets -32600; ``exit`` ends the server with code 0 after ``shutdown``, else 1.
    """

    def __init__(self, server: JsonRPCServer, converter: cattrs.Converter,
                 on_cancel: Callable[[int | str], None] = lambda _id: None,
                 on_parse_error: Callable[[str], None] = lambda _message: None) -> None:
        self.server, self.converter, self.on_cancel, self.on_parse_error = server, converter, on_cancel, on_parse_error
        self.initialized = False
        self.shut_down = False
        self.exit_code: int | None = None
        self.writer: FrameWriter | None = None

    # -- answering ----------------------------------------------------------------------------------------
    def send_error(self, msg_id: int | str | None, code: int, message: str) -> None:
        body = json.dumps({"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}})
        if self.writer is not None:
            self.writer.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body.encode()))

    def reply_error(self, error: RpcError) -> None:
        level = logging.INFO if error.code == SERVER_NOT_INITIALIZED else logging.WARNING
        log.log(level, "answered %s with %d: %s", "null" if error.msg_id is None else repr(error.msg_id)[:80],
                error.code, error.message)
        self.send_error(error.msg_id, error.code, error.message)

    # -- one frame ----------------------------------------------------------------------------------------------
    def body(self, data: bytes) -> bytes:
        """Handle one frame's body; return bytes that belong to the next frame (see ``parse_body``)."""
        try:
            value, rest = parse_body(data)
        except RpcError as exc:
            self.reply_error(exc)
            if self.initialized:
                self.on_parse_error(exc.message)
            return b""
        self.message(value)
        return rest

    def message(self, value: Any) -> None:
        try:
            incoming = check_envelope(value)
        except RpcError as exc:
            self.reply_error(exc)
            return
        try:
            self.dispatch(incoming)
        except RpcError as exc:
            if incoming.kind == "request":
                exc.msg_id = incoming.id
                self.reply_error(exc)
            else:
                log.warning("dropped %s %r: %s", incoming.kind, incoming.method[:80], exc.message)
        except Exception as exc:  # a bug of ours: logged with its traceback, the request still answered
            log.exception("could not handle %s %r", incoming.kind, incoming.method[:80])
            if incoming.kind == "request":
                self.send_error(incoming.id, INTERNAL_ERROR, f"internal error: {type(exc).__name__}: {exc}"[:300])

    def dispatch(self, msg: Incoming) -> None:
        protocol = self.server.protocol
        method = msg.method
        if msg.kind == "response":
            self._response(msg)
            return
        if method == lsp.EXIT:
            self.exit_code = 0 if self.shut_down else 1
            return
        if msg.kind == "notification":
            if not self.initialized or self.shut_down:
                log.info("dropped notification %r (%s)", method[:80],
                         "shutting down" if self.shut_down else "not initialized yet")
                return
            if method == lsp.CANCEL_REQUEST:
                cancel_id = msg.raw["params"].get("id") if isinstance(msg.raw.get("params"), dict) else None
                if not _valid_id(cancel_id):
                    raise RpcError(INVALID_PARAMS, "$/cancelRequest needs an integer or string id")
                self.on_cancel(cancel_id)  # type: ignore[arg-type]
        else:
            if self.shut_down:
                raise RpcError(INVALID_REQUEST, f"invalid request {method!r}: the server is shutting down "
                                                "(only exit is accepted after shutdown)")
            if method == lsp.INITIALIZE:
                if self.initialized:
                    raise RpcError(INVALID_REQUEST, "invalid request: initialize was already received")
            elif not self.initialized:
                raise RpcError(SERVER_NOT_INITIALIZED, f"the server is not initialized: send initialize before "
                                                       f"{method!r}")
        if not self._known(method):
            if msg.kind == "request":
                raise RpcError(METHOD_NOT_FOUND, f"method not found: {method!r}")
            log.info("ignored notification for unknown method %r", method[:80])
            return
        structured = self._structure(msg)
        if method == lsp.WORKSPACE_EXECUTE_COMMAND:
            command = getattr(structured.params, "command", None)
            if command not in protocol.fm.commands:
                known = ", ".join(sorted(protocol.fm.commands))
                raise RpcError(INVALID_PARAMS, f"invalid params: command {command!r} is not defined (known: {known})")
        if method == lsp.INITIALIZE:
            self.initialized = True
        elif method == lsp.SHUTDOWN:
            self.shut_down = True
        protocol.handle_message(structured)

    def _known(self, method: str) -> bool:
        fm = self.server.protocol.fm
        return method in fm.builtin_features or method in fm.features or method == lsp.CANCEL_REQUEST

    def _structure(self, msg: Incoming) -> Any:
        """The typed message pygls expects; methods without an LSP type get their params as plain JSON."""
        raw = msg.raw
        message_type = self.server.protocol.get_message_type(msg.method)
        if message_type is None:
            if msg.kind == "request":
                return JsonRPCRequestMessage(id=raw["id"], method=msg.method, jsonrpc="2.0", params=raw.get("params"))
            return JsonRPCNotification(method=msg.method, jsonrpc="2.0", params=raw.get("params"))
        try:
            return self.converter.structure(raw, message_type)
        except Exception as exc:
            raise RpcError(INVALID_PARAMS, f"invalid params for {msg.method!r}: {describe_structure_error(exc)}") \
                from None

    def _response(self, msg: Incoming) -> None:
        """A client's answer to one of our requests; its result stays plain JSON (the caller checks it)."""
        raw = msg.raw
        if "error" in raw:
            error = raw["error"]
            ok = isinstance(error, dict) and type(error.get("code")) is int and isinstance(error.get("message"), str)
            response: Any = lsp.ResponseErrorMessage(id=raw["id"], error=lsp.ResponseError(
                code=error["code"] if ok else INTERNAL_ERROR,
                message=error["message"] if ok else f"malformed error from the client: {json.dumps(error)[:200]}"))
        else:
            response = JsonRPCResponseMessage(id=raw["id"], jsonrpc="2.0", result=raw["result"])
        self.server.protocol.handle_message(response)


# -- running ------------------------------------------------------------------------------------------------------
async def serve(edge: Edge, chunks: asyncio.Queue[bytes], framer: Framer | None = None) -> int:
    """Frame, check and dispatch until ``exit`` or end of input; the exit code (1 unless shut down first)."""
    framer = framer or Framer()
    dropped_runs = 0
    while edge.exit_code is None:
        chunk = await chunks.get()
        if not chunk:
            log.info("end of input: stopping")
            break
        for item in framer.feed(chunk):
            if isinstance(item, Dropped):
                dropped_runs += 1
                log.warning("skipped bytes in the input stream: %s", item.why)
                continue
            rest = edge.body(item.data)
            if rest:
                framer.push_back(rest)
            await asyncio.sleep(0)  # let the handlers this message started run, in order
            if edge.exit_code is not None:
                break
        if edge.writer is not None and edge.writer.closed:
            break
    return edge.exit_code if edge.exit_code is not None else (0 if edge.shut_down else 1)


def _reader_thread(stream: BinaryIO, loop: asyncio.AbstractEventLoop, chunks: asyncio.Queue[bytes]) -> None:
    """Blocking reads on a daemon thread (a blocked read never keeps the process alive); b"" marks the end."""
    fd = stream.fileno()
    while True:
        try:
            data = os.read(fd, READ_CHUNK)
        except OSError:
            data = b""
        try:
            asyncio.run_coroutine_threadsafe(chunks.put(data), loop).result()
        except RuntimeError:  # the loop is gone
            return
        if not data:
            return


def run_stdio(server: JsonRPCServer, edge: Edge, stdin: BinaryIO | None = None,
              stdout: BinaryIO | None = None) -> int:
    """Serve LSP over stdio; return the process exit code."""
    install_log_filter()

    async def main() -> int:
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[bytes] = asyncio.Queue(maxsize=64)  # backpressure on a flood
        writer = FrameWriter(stdout or sys.stdout.buffer)
        edge.writer = writer
        server.protocol.set_writer(writer)
        threading.Thread(target=_reader_thread, args=(stdin or sys.stdin.buffer, loop, chunks),
                         name="stdin", daemon=True).start()
        return await serve(edge, chunks)

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        return 1


def run_tcp(server: JsonRPCServer, edge: Edge, host: str, port: int) -> int:
    """Serve LSP to one TCP client at a time; return when a client sends ``exit``."""
    install_log_filter()

    async def main() -> int:
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def connection(reader: asyncio.StreamReader, stream: asyncio.StreamWriter) -> None:
            chunks: asyncio.Queue[bytes] = asyncio.Queue(maxsize=64)
            writer = FrameWriter(_SocketStream(stream))
            edge.writer = writer
            server.protocol.set_writer(writer)

            async def pump() -> None:
                while True:
                    try:
                        data = await reader.read(READ_CHUNK)
                    except ConnectionError:
                        data = b""
                    await chunks.put(data)
                    if not data:
                        return

            pumping = asyncio.ensure_future(pump())
            code = await serve(edge, chunks)
            pumping.cancel()
            stream.close()
            if not done.done():
                done.set_result(code)

        tcp = await asyncio.start_server(connection, host, port)
        log.info("serving on %s", ", ".join(str(s.getsockname()) for s in tcp.sockets))
        async with tcp:
            code = await done
        return code

    return asyncio.run(main())


class _SocketStream:
    """A TCP stream writer with the ``write``/``flush`` of a binary file."""

    def __init__(self, stream: asyncio.StreamWriter) -> None:
        self.stream = stream

    def write(self, data: bytes) -> int:
        if self.stream.is_closing():
            raise ConnectionError("the connection is closed")
        self.stream.write(data)
        return len(data)

    def flush(self) -> None:
        pass
