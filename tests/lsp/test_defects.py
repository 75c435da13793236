"""Issue 15's two user-visible defects, over LSP against the real server and the real embedded model.

1. The first completion after start arrives while the model loads: the load must not eat its time budget.
2. Accepting at column 0 of an indented blank line must give the indentation once, not twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.lsp.rawclient import RawServer

SOURCE = '''import sys


def count_words(text):
    words = text.split()
    return len(words)


def main():
    total = 0
    for name in sys.argv[1:]:
        with open(name) as f:
            total += count_words(f.read())
'''


def apply(text: str, item: dict, line: int) -> str:
    """What the editor holds after accepting ``item``: its insertText over its range (ASCII: columns = chars)."""
    lines = text.split("\n")
    start, end = item["range"]["start"], item["range"]["end"]
    assert start["line"] == end["line"] == line
    row = lines[line]
    lines[line] = row[:start["character"]] + item["insertText"] + row[end["character"]:]
    return "\n".join(lines)


def test_the_first_invoked_completion_while_the_model_loads_is_not_empty() -> None:
    """Sent right after ``initialized``: it waits for the load, then still gets its whole budget."""
    server = RawServer()
    try:
        started = time.monotonic()
        server.initialize({"timeBudgetMs": 300})
        text = SOURCE + "    print("
        server.open("file:///work/first.py", text)
        lines = text.split("\n")
        answer = server.complete("file:///work/first.py", len(lines) - 1, len(lines[-1]), kind=1, timeout=120)
        waited = time.monotonic() - started
        items = answer["result"]["items"]
        assert items and items[0]["insertText"].strip(), (answer, server.stderr[-2000:])
        stats = server.request("codellama/stats", {})["result"]
        # the request really did wait for the load, longer than its budget: the case the defect was about
        assert waited > 0.3, waited
        assert stats["model_state"] == "ready"
    finally:
        server.close()


@pytest.fixture(scope="module")
def ready() -> Iterator[RawServer]:
    s = RawServer()
    s.initialize({"timeBudgetMs": 10000})
    s.wait_ready()
    yield s
    s.close()


@pytest.mark.parametrize(("after", "indent"), [("    total = 0\n", "    "),
                                               ("        with open(name) as f:\n", "        ")])
def test_accepting_at_column_0_of_an_indented_blank_line_gives_the_indentation_once(ready: RawServer, after: str,
                                                                                     indent: str) -> None:
    text = SOURCE.replace(after, after + indent + "\n")
    row = text.split("\n").index(indent)
    uri = f"file:///work/col0_{len(indent)}.py"
    ready.open(uri, text)
    items = ready.complete(uri, row, 0, kind=1)["result"]["items"]
    assert items, "no suggestion at column 0 of an indented blank line"
    for item in items:
        first = item["insertText"].split("\n")[0]
        assert first.startswith(indent), item  # the model indents its own code (the case the defect is about)
        got = apply(text, item, row).split("\n")[row]
        # exactly the suggestion's line: its indentation once, the line's own spaces not left behind after it
        assert got == first, (item, got)
