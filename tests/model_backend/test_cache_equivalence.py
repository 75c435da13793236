"""The KV cache never changes what the user sees: a typing replay with the embedded model, cached vs cold."""

from __future__ import annotations

from pathlib import Path

from lsp_server.completion.core import CompletionCore
from lsp_server.completion.documents import Document
from lsp_server.settings import Settings

CONTEXT = (Path(__file__).parents[2] / "benchmarks" / "data" / "inventory.py").read_text()
TYPED = '''

def low_stock(inventory, threshold=5):
    """Items that need restocking."""
    return [item for item in inventory.items.values() if item.stock < threshold]
'''


def test_typing_replay_gives_identical_output_with_and_without_cache_reuse() -> None:
    # A generous time budget: on a loaded machine a cold 1,200-token prefill can pass the default 2 s, and a
    # decode cut by the clock differs for reasons that have nothing to do with the cache.
    cached = CompletionCore(Settings(max_new_tokens=24, time_budget_ms=60_000))
    cold = CompletionCore(Settings(max_new_tokens=24, time_budget_ms=60_000, cache_reuse=False))
    cached.load()
    cold.load()
    text = CONTEXT
    reused = 0
    for i, ch in enumerate(TYPED[:60]):
        text += ch
        doc = Document("file:///t.py", "python", i, text)
        a = cached.generate(cached.prepare(doc, len(text)))
        b = cold.generate(cold.prepare(doc, len(text)))
        assert a.result.ids == b.result.ids, f"diverged after typing {TYPED[:i + 1]!r}"
        assert a.text == b.text
        assert b.result.reused_tokens == 0
        reused += a.result.reused_tokens
    assert reused > 50 * 1000  # the cache was really used (~1,200 tokens per keystroke)
