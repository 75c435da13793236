"""Per-stage timings: the fit check's setup is timed on its own, not counted as prompt building."""

from __future__ import annotations

import time

import pytest

from lsp_server.completion import fit_check
from lsp_server.completion.core import CompletionCore
from lsp_server.completion.documents import Document
from lsp_server.settings import Settings


@pytest.fixture(scope="module")
def core() -> CompletionCore:
    c = CompletionCore(Settings(time_budget_ms=60_000, max_new_tokens=4))
    c.load()
    return c


def test_fit_check_setup_is_fit_ms_not_prompt_ms(core: CompletionCore, monkeypatch: pytest.MonkeyPatch) -> None:
    real = fit_check.for_cursor

    def slow(doc: Document, offset: int) -> fit_check.FitCheck:  # a stand-in for a large region to capture
        time.sleep(0.2)
        return real(doc, offset)

    monkeypatch.setattr(fit_check, "for_cursor", slow)
    text = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    "
    prep = core.prepare(Document("file:///t.py", "python", 1, text), len(text))
    assert prep.fit_ms >= 200
    assert prep.prompt_ms < 200
    outcome = core.generate(prep)
    assert outcome.timings["fit_ms"] == prep.fit_ms and outcome.timings["prompt_ms"] == prep.prompt_ms
