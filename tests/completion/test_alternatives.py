"""With the embedded model: when its first answer would break the code at the cursor, another one is shown."""

from __future__ import annotations

import pytest

from lsp_server.completion import fit_check
from lsp_server.completion.core import CompletionCore, Outcome
from lsp_server.completion.documents import Document
from lsp_server.settings import Settings

# Blank lines in code of our own.  On some the embedded model's first answer does not fit (an unclosed
# docstring above `return low`, nothing at all above an indented body); on the others it does.
HOLES = [
    "def count_words(text):\n    counts = {}\n    for word in text.split():\n{hole}\n"
    "            counts[word] = 0\n        counts[word] += 1\n    return counts\n",
    "def clamp(value, low, high):\n{hole}\n        return low\n    if value > high:\n        return high\n"
    "    return value\n",
    "def read_lines(path):\n    lines = []\n{hole}\n        for line in handle:\n"
    "            lines.append(line.rstrip())\n    return lines\n",
    "def first_even(numbers):\n    for n in numbers:\n{hole}\n            return n\n    return None\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n{hole}\n\n"
    "    def pop(self):\n        return self.items.pop()\n",
]


def complete(core: CompletionCore, source: str) -> tuple[Outcome, fit_check.FitCheck]:
    text, offset = source.replace("{hole}", ""), source.index("{hole}")
    doc = Document("file:///holes.py", "python", 1, text)
    return core.generate(core.prepare(doc, offset)), fit_check.for_cursor(doc, offset)


@pytest.fixture(scope="module")
def cores() -> tuple[CompletionCore, CompletionCore]:
    plain = CompletionCore(Settings(alternatives=0, time_budget_ms=60_000))
    retrying = CompletionCore(Settings(alternatives=3, time_budget_ms=60_000))
    plain.load()
    retrying.load()
    return plain, retrying


def test_a_suggestion_that_breaks_the_code_is_replaced_by_one_that_fits(
        cores: tuple[CompletionCore, CompletionCore]) -> None:
    plain, retrying = cores
    replaced = 0
    for source in HOLES:
        first, check = complete(plain, source)
        chosen, _ = complete(retrying, source)
        if first.text and not check.breaks(first.text):  # it fitted: shown as it was, nothing else decoded
            assert chosen.tried == 1 and chosen.text == first.text
            continue
        assert chosen.tried > 1, source
        assert chosen.text and not check.breaks(chosen.text), (source, chosen.text)
        replaced += 1
    assert replaced >= 2  # the model's first answers really did not fit here (else this tests nothing)


def test_the_time_budget_bounds_the_search(cores: tuple[CompletionCore, CompletionCore]) -> None:
    _, retrying = cores
    prep = retrying.prepare(Document("file:///holes.py", "python", 1, HOLES[1].replace("{hole}", "")),
                            HOLES[1].index("{hole}"), now=0.0)  # a deadline long past: decoding stops at once
    outcome = retrying.generate(prep)
    assert outcome.tried == 1 and outcome.result.stop == "time"
