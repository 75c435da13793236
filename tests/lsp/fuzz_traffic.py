"""Seeded client traffic for fuzzing the server: valid typing interleaved with malformed frames, JSON-RPC
errors, LSP garbage and UTF-16 edge cases.  Used by ``tests/lsp/test_fuzz.py`` (CI-sized) and
``benchmarks/fuzz_run.py`` (the long run).  Deterministic: the same seed gives the same bytes.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.lsp.rawclient import RawServer

BASE_TEXT = "import os\n\n\ndef total(values):\n    result = 0\n    for v in values:\n        result += v\n    \n"
ODD_LINES = ["emoji = '😀😀'  # surrogate pairs\n", "名前 = '漢字'\n", "\tx = 1\t# tabs\n", "s = '\\u2028'\n"]


@dataclass
class Item:
    """One thing to write: raw bytes, and the id of the request it carries (None: no answer expected)."""

    data: bytes
    request_id: int | str | None = None


def frame(payload: Any) -> bytes:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


class Traffic:
    """A client's session of ``count`` messages; ``items()`` yields them in order."""

    def __init__(self, seed: int, count: int, big_document: bool = True) -> None:
        self.rng = random.Random(seed)
        self.count = count
        self.big_document = big_document
        self.next_id = 1000
        self.docs: dict[str, list[str]] = {}  # uri -> lines (client's view of open documents)
        self.versions: dict[str, int] = {}

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    def request(self, method: str, params: Any) -> Item:
        msg_id = self._id()
        return Item(frame({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params}), msg_id)

    def notify(self, method: str, params: Any) -> Item:
        return Item(frame({"jsonrpc": "2.0", "method": method, "params": params}))

    # -- valid traffic ------------------------------------------------------------------------------------------
    def open_doc(self, uri: str, text: str) -> Item:
        self.docs[uri] = text.split("\n")
        self.versions[uri] = 1
        return self.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python",
                                                                     "version": 1, "text": text}})

    def type_char(self, uri: str) -> Item:
        lines = self.docs[uri]
        line = self.rng.randrange(len(lines))
        col = self.rng.randint(0, len(lines[line]))
        ch = self.rng.choice(["a", "b", "(", ")", " ", "\n", "x", "1", "😀", "漢", "\t", ":"])
        units = len(lines[line][:col].encode("utf-16-le")) // 2
        before, after = lines[line][:col], lines[line][col:]
        new = (before + ch + after).split("\n")
        lines[line:line + 1] = new
        self.versions[uri] += 1
        return self.notify("textDocument/didChange", {
            "textDocument": {"uri": uri, "version": self.versions[uri]},
            "contentChanges": [{"range": {"start": {"line": line, "character": units},
                                          "end": {"line": line, "character": units}}, "text": ch}]})

    def complete_at_random(self, uri: str) -> Item:
        lines = self.docs.get(uri) or [""]
        line = self.rng.randrange(len(lines))
        char = self.rng.choice([0, len(lines[line]), len(lines[line]) + 50, self.rng.randint(0, 5)])
        return self.request("textDocument/inlineCompletion", {
            "textDocument": {"uri": uri}, "position": {"line": line, "character": char},
            "context": {"triggerKind": self.rng.choice([1, 2])}})

    # -- bad traffic ----------------------------------------------------------------------------------------------
    def garbage(self) -> Item:
        r = self.rng
        kind = r.randrange(16)
        if kind == 0:
            return Item(frame(b'{"jsonrpc": "2.0", "id": ' + str(self._id()).encode() + b', "method": '))
        if kind == 1:  # not JSON at all, but framed: -32700 with id null
            return Item(frame(bytes(r.randrange(256) for _ in range(r.randint(1, 200)))))
        if kind == 2:
            return Item(frame([{"jsonrpc": "2.0", "id": 1, "method": "codellama/stats"}]))
        if kind == 3:
            return Item(frame({"jsonrpc": "2.0", "id": r.choice([True, None, [7], {"n": 1}, 1.5]),
                               "method": "codellama/stats"}))
        if kind == 4:
            return Item(frame({"jsonrpc": "2.0", "id": self._id(), "method": r.choice([5, ["a"], None])}),
                        self.next_id)
        if kind == 5:
            return self.request("textDocument/inlineCompletion", {
                "textDocument": {"uri": r.choice(list(self.docs) or ["file:///x.py"])},
                "position": {"line": r.choice([1.5, "0", -1, 10**9, None]), "character": 0},
                "context": {"triggerKind": 1}})
        if kind == 6:
            return self.request("codellama/stats", {"x": {"jsonrpc": "2.0", "id": self.next_id + 1,
                                                          "method": "textDocument/didOpen", "params": 5}})
        if kind == 7:
            return self.notify("$/cancelRequest", {"id": r.choice([[1], {"a": 1}, None, self.next_id])})
        if kind == 8:
            return self.request(r.choice(["nope/method", "textDocument/hover", "codellama/none"]), {})
        if kind == 9:
            return Item(b"Content-Length: " + str(r.choice([10**12, 10**20])).encode() + b"\r\n\r\n")
        if kind == 10:
            return Item(bytes(r.randrange(256) for _ in range(r.randint(1, 4096))))
        if kind == 11:  # didChange out of range, or for a closed document
            return self.notify("textDocument/didChange", {
                "textDocument": {"uri": r.choice(list(self.docs) or ["file:///x.py"]), "version": 10**6},
                "contentChanges": [{"range": {"start": {"line": 10**6, "character": 5},
                                              "end": {"line": -1, "character": 0}}, "text": "zz"}]})
        if kind == 12:  # a request for a document never opened
            return self.request("textDocument/inlineCompletion", {
                "textDocument": {"uri": f"file:///closed{r.randrange(10)}.py"},
                "position": {"line": 0, "character": 0}, "context": {"triggerKind": 2}})
        if kind == 13:
            return Item(frame({"jsonrpc": "2.0", "id": self._id(), "method": "codellama/stats", "params": 5}),
                        self.next_id)
        if kind == 14:
            return Item(frame({"id": self._id(), "method": "codellama/stats"}))  # no jsonrpc: id null error
        return Item(b"content-length:   %d  \n\n" % 2 + b"{}")  # odd header, and {} is not a message

    # -- the whole session ------------------------------------------------------------------------------------
    def items(self) -> Iterator[Item]:
        r = self.rng
        yield self.open_doc("file:///work/main.py", BASE_TEXT + "".join(ODD_LINES))
        yield self.open_doc("file:///work/other.py", "def helper(x):\n    return x * 2\n")
        if self.big_document:
            yield self.open_doc("file:///work/big.py", "value = 1  # padding line\n" * 200_000)  # ~5 MB
        yield self.open_doc("file:///work/binary.py", "".join(chr(r.randrange(1, 0x2FF)) for _ in range(5000)))
        sent = 4
        while sent < self.count:
            roll = r.random()
            uri = r.choice(["file:///work/main.py", "file:///work/other.py"])
            if roll < 0.35:
                yield self.type_char(uri)
            elif roll < 0.5:
                yield self.complete_at_random(uri)
            elif roll < 0.53:
                yield self.notify("textDocument/didClose", {"textDocument": {"uri": "file:///work/binary.py"}})
                yield self.request("textDocument/inlineCompletion", {
                    "textDocument": {"uri": "file:///work/binary.py"}, "position": {"line": 0, "character": 0},
                    "context": {"triggerKind": 1}})
                yield self.open_doc("file:///work/binary.py", "x = '\x00\x01'\n")
                sent += 2
            elif roll < 0.56:
                yield self.request("codellama/stats", {})
            else:
                yield self.garbage()
            sent += 1


@dataclass
class Delivery:
    """What one fuzz session sent, and what came back for it."""

    sent: int  # messages written (our initialize not counted)
    sent_requests: int
    input_stalled: bool  # the writer was still blocked when its time ran out: the server stopped reading
    unanswered: list[Any]
    duplicated: list[Any]
    strangers: list[str]  # answers to ids never sent as requests


def deliver(server: RawServer, traffic: Traffic, timeout: float) -> Delivery:
    """Write every message from a thread (a server that stops reading shows as a stalled writer), then wait up to
    ``timeout`` for every request's answer, and count what is missing, doubled or addressed to an unknown id."""
    expected: list[Any] = []
    sent = 0

    def writer() -> None:
        nonlocal sent
        for item in traffic.items():
            server.write(item.data)
            sent += 1
            if item.request_id is not None:
                expected.append(item.request_id)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    thread.join(timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(server.answer_counts()[json.dumps(i)] for i in expected):
        time.sleep(0.2)
    counts = server.answer_counts()
    allowed = {json.dumps(i) for i in expected} | {"null", "1"}  # 1: our initialize
    return Delivery(sent, len(expected), thread.is_alive(), [i for i in expected if not counts[json.dumps(i)]],
                    [i for i in expected if counts[json.dumps(i)] > 1],
                    [k for k in counts if k not in allowed and not k.startswith('"')])
