"""The next suggestion before it is asked for: accepting a suggestion is answered from the one computed ahead.

The real server and model over LSP.  "Accepting" is what an editor does: insert the shown text, then ask again
at the new cursor.  Every answer from the prefetch is checked against what the same request gets from the model
with prefetch off (the same text, the same cursor), so prefetch changes when a suggestion arrives, never which.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import pytest_lsp
from lsprotocol import types as lsp
from pytest_lsp import LanguageClient

from tests.lsp.editor import CAPABILITIES, SERVER, Buffer, as_dict, request

SOURCE = '''import os


class Inventory:
    """Items in stock, by name."""

    def __init__(self):
        self.items = {}

    def add(self, name, count):
        self.items[name] = self.items.get(name, 0) + count

    def remove(self, name, count):
        self.items[name] = self.items.get(name, 0) - count

    def total(self):
'''


@pytest_lsp.fixture(config=SERVER, scope="module")
async def client(lsp_client: LanguageClient):  # type: ignore[no-untyped-def]
    await lsp_client.initialize_session(lsp.InitializeParams(
        capabilities=CAPABILITIES, initialization_options={"timeBudgetMs": 20000, "prefetch": True}))
    yield
    await lsp_client.shutdown_session()


async def stats(client: LanguageClient) -> dict[str, Any]:
    return as_dict(await request(client, "codellama/stats"))


def configure(client: LanguageClient, **settings: Any) -> None:
    client.workspace_did_change_configuration(lsp.DidChangeConfigurationParams(settings=settings))


async def shown(buf: Buffer) -> list[str]:
    """The suggestions offered at the end of ``buf`` (empty: nothing to show)."""
    result = await buf.complete()
    assert result is not None
    return [str(item.insert_text) for item in result.items]


async def without_prefetch(client: LanguageClient, buf: Buffer) -> list[str]:
    """The same request answered by the model itself."""
    configure(client, prefetch=False)
    try:
        return await shown(buf)
    finally:
        configure(client, prefetch=True)


async def until_prefetched(client: LanguageClient, count: int) -> None:
    for _ in range(600):
        if (await stats(client))["prefetched"] >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the next suggestion was never computed ahead")


@pytest.mark.asyncio(loop_scope="module")
async def test_tab_tab_tab_each_next_suggestion_is_ready_and_the_same(client: LanguageClient) -> None:
    buf = Buffer(client, "file:///work/prefetch_tabs.py", SOURCE + "        return sum(")
    done = (await stats(client))["prefetched"]  # read before the answer whose prefetch we wait for
    texts = await shown(buf)
    steps: list[tuple[str, list[str]]] = []
    while texts and len(steps) < 3:  # accept, and the next suggestion is already there
        await until_prefetched(client, done + 1)
        before = await stats(client)
        done = before["prefetched"]
        buf.insert(len(buf.text), texts[0])
        texts = await shown(buf)  # answered from the prefetch, which starts the next one
        after = await stats(client)
        assert after["prefetch_hits"] == before["prefetch_hits"] + 1
        assert after["generated_tokens"] == before["generated_tokens"], "the model was asked"
        steps.append((buf.text, texts))
    assert steps
    configure(client, prefetch=False)  # checked after the loop: a model call would cancel the running prefetch
    try:
        for i, (text, expected) in enumerate(steps):
            fresh = Buffer(client, f"file:///work/prefetch_tabs_check{i}.py", text)
            assert await shown(fresh) == expected  # the very suggestions the model gives
    finally:
        configure(client, prefetch=True)


@pytest.mark.asyncio(loop_scope="module")
async def test_a_keystroke_cancels_the_prefetch_and_gets_the_models_answer(client: LanguageClient) -> None:
    buf = Buffer(client, "file:///work/prefetch_cancel.py", SOURCE + "        count = len(")
    first = await shown(buf)
    assert first
    buf.insert(len(buf.text), "x" if first[0].startswith("s") else "s")  # not what the suggestion says
    got = await shown(buf)  # asked at once, while the prefetch for the first suggestion may still run
    assert got == await without_prefetch(client, buf)


@pytest.mark.asyncio(loop_scope="module")
async def test_prefetch_off_computes_nothing_ahead(client: LanguageClient) -> None:
    configure(client, prefetch=False)
    try:
        buf = Buffer(client, "file:///work/prefetch_off.py", SOURCE + "        count = ")
        before = await stats(client)
        texts = await shown(buf)
        assert texts
        await asyncio.sleep(1.0)
        buf.insert(len(buf.text), texts[0])
        await buf.complete()
        after = await stats(client)
        assert after["prefetched"] == before["prefetched"] and after["prefetch_hits"] == before["prefetch_hits"]
    finally:
        configure(client, prefetch=True)
