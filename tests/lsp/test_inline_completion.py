"""End to end: the real server process, the real embedded model, over stdio with pytest-lsp's client."""

from __future__ import annotations

import asyncio

import pytest
import pytest_lsp
from lsprotocol import types as lsp
from pytest_lsp import LanguageClient

from tests.lsp.editor import CAPABILITIES, SERVER, Buffer, as_dict, request

SOURCE = '''import os
import sys


def read_lines(path):
    """Return the lines of a text file."""
    with open(path) as f:
        return f.read().splitlines()


def count_words(text):
    words = text.split()
    return len(words)


def main():
    for name in sys.argv[1:]:
        lines = read_lines(name)
        total = 0
        for line in lines:
            total += count_words(line)
'''
SPECIAL = ("<PRE>", "<SUF>", "<MID>", "<EOT>", "<s>", "</s>")


@pytest_lsp.fixture(config=SERVER, scope="module")
async def client(lsp_client: LanguageClient):  # type: ignore[no-untyped-def]
    await lsp_client.initialize_session(lsp.InitializeParams(capabilities=CAPABILITIES,
                                                             initialization_options={"timeBudgetMs": 5000}))
    yield
    await lsp_client.shutdown_session()


@pytest.mark.asyncio(loop_scope="module")
async def test_completions_are_non_empty_and_ranged_at_the_cursor(client: LanguageClient) -> None:
    partial_lines = ["        print(", "    return len(", "        lines = read_lines(", "    words = text.",
                     "    print(\"total:\", "]
    shown = []
    for i, partial in enumerate(partial_lines):
        buf = Buffer(client, f"file:///work/wc{i}.py", SOURCE + partial)
        result = await buf.complete()
        assert result is not None
        for item in result.items:
            assert item.range == lsp.Range(start=buf.end(), end=buf.end())
            assert isinstance(item.insert_text, str) and item.insert_text.strip()
            assert not any(s in item.insert_text for s in SPECIAL)
            assert "\n" not in item.insert_text  # mid-statement: single-line suggestions
            shown.append(item.insert_text)
    assert len(shown) >= 3, shown


@pytest.mark.asyncio(loop_scope="module")
async def test_block_mode_after_a_block_opener(client: LanguageClient) -> None:
    text = SOURCE + "\n\ndef is_even(n):\n    "
    buf = Buffer(client, "file:///work/block.py", text)
    result = await buf.complete()
    assert result is not None and result.items
    suggestion = result.items[0].insert_text
    assert isinstance(suggestion, str) and suggestion.strip()
    for line in suggestion.split("\n")[1:]:  # later lines stay inside the body
        assert not line.strip() or line.startswith("    ")


@pytest.mark.asyncio(loop_scope="module")
async def test_cache_is_reused_while_typing(client: LanguageClient) -> None:
    before = as_dict(await request(client, "codellama/stats"))
    buf = Buffer(client, "file:///work/typing.py", SOURCE + "\n\ndef average(values):\n    ")
    for ch in "total = sum(values":
        buf.insert(len(buf.text), ch)
        await buf.complete()
    after = as_dict(await request(client, "codellama/stats"))
    prefilled = after["prefilled_tokens"] - before["prefilled_tokens"]
    reused = after["reused_tokens"] - before["reused_tokens"]
    model_calls = (after["requests"] - before["requests"]) - (after["typed_ahead_hits"] - before["typed_ahead_hits"])
    assert reused > 10 * prefilled  # the long prompt stays cached; only the new tokens are computed
    assert prefilled / max(model_calls, 1) <= 400  # the first request is cold, the rest ~1-3 tokens each
    assert after["latency_ms_p50"] is not None


@pytest.mark.asyncio(loop_scope="module")
async def test_utf16_positions_with_emoji_cjk_and_tabs(client: LanguageClient) -> None:
    text = 'def greet():\n\tmsg = "😀 你好 😀"  # comment\n\treturn msg\n'
    buf = Buffer(client, "file:///work/emoji.py", text)
    client.workspace_did_change_configuration(lsp.DidChangeConfigurationParams(settings={"fimMode": "psm"}))
    try:  # a failure here must not leave the later tests in PSM mode
        cursor = text.index("你好") + 2  # after the CJK word, between a space and an emoji
        buf.insert(cursor, "世界")  # an edit whose range is in UTF-16 units past a surrogate pair
        cursor += 2
        await buf.complete(cursor)
        prompt = as_dict(await request(client, "codellama/lastPrompt"))
        assert prompt["mode"] == "psm"
        assert prompt["text"].endswith(f"▁<PRE> {buf.text[:cursor]}▁<SUF>{buf.text[cursor:]}▁<MID>")
    finally:
        client.workspace_did_change_configuration(lsp.DidChangeConfigurationParams(settings={"fimMode": "auto"}))


@pytest.mark.asyncio(loop_scope="module")
async def test_newer_request_supersedes_older_one(client: LanguageClient) -> None:
    buf = Buffer(client, "file:///work/race.py", SOURCE + "\n\ndef parse(text):\n    ")
    before = as_dict(await request(client, "codellama/stats"))
    first = asyncio.ensure_future(buf.complete())
    await asyncio.sleep(0)
    buf.insert(len(buf.text), "r")
    second = await buf.complete()
    old = await first
    after = as_dict(await request(client, "codellama/stats"))
    assert old is not None and not old.items  # answered promptly, with nothing
    assert after["superseded"] - before["superseded"] >= 1
    assert second is not None


@pytest.mark.asyncio(loop_scope="module")
async def test_cancel_request_is_answered_and_decoding_stops(client: LanguageClient) -> None:
    buf = Buffer(client, "file:///work/cancel.py", SOURCE + "\n\nclass Reader:\n    ")
    params = lsp.InlineCompletionParams(
        text_document=lsp.TextDocumentIdentifier(uri=buf.uri), position=buf.end(),
        context=lsp.InlineCompletionContext(trigger_kind=lsp.InlineCompletionTriggerKind.Invoked))
    before = as_dict(await request(client, "codellama/stats"))
    pending = asyncio.ensure_future(
        client.protocol.send_request_async(lsp.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id="to-cancel"))
    await asyncio.sleep(0)  # the request is on its way; cancel it right behind
    client.protocol.notify(lsp.CANCEL_REQUEST, lsp.CancelParams(id="to-cancel"))
    with pytest.raises(Exception, match="cancel"):
        await pending
    assert await buf.complete() is not None  # the server keeps serving (this request queues behind the old one)
    after = as_dict(await request(client, "codellama/stats"))
    assert after["cancelled"] - before["cancelled"] == 1
    stops = [entry["stop"] for entry in after["recent_stops"] if entry["uri"] == buf.uri]
    # the cancelled request either never reached the model or stopped decoding on the flag
    assert stops[:-1] in ([], ["cancelled"]), stops


@pytest.mark.asyncio(loop_scope="module")
async def test_result_for_an_older_version_is_not_returned(client: LanguageClient) -> None:
    text = SOURCE + "\n\ndef report(counts):\n    "
    unedited = await Buffer(client, "file:///work/stale_reference.py", text).complete()
    assert unedited is not None and unedited.items, "the model suggests nothing here even without an edit"
    buf = Buffer(client, "file:///work/stale.py", text)
    before = as_dict(await request(client, "codellama/stats"))
    pending = asyncio.ensure_future(buf.complete())
    await asyncio.sleep(0)
    buf.insert(0, "# edited while the model was thinking\n")  # moves every line: the old range would be wrong
    result = await pending
    after = as_dict(await request(client, "codellama/stats"))
    assert result is not None and not result.items
    # empty because the answer was for an older version (the same text unedited gets one), not for another reason
    assert after["stale"] - before["stale"] == 1
    assert after["superseded"] == before["superseded"] and after["errors"] == before["errors"]


@pytest.mark.asyncio(loop_scope="module")
async def test_last_prompt_healed_is_the_backed_off_text_or_null(client: LanguageClient) -> None:
    """``healed`` has one type: the text token healing took off the prefix's end, or null when none."""
    typing = Buffer(client, "file:///work/healed.py", SOURCE + "\n\ndef tally(counts):\n    return len(cou")
    await typing.complete()
    prompt = as_dict(await request(client, "codellama/lastPrompt"))
    assert prompt["mode"] == "spm" and isinstance(prompt["healed"], str) and prompt["healed"]
    assert typing.text.endswith(prompt["healed"])  # the word being typed (here "cou"), backed off
    line_start = Buffer(client, "file:///work/not_healed.py", SOURCE + "\n\nx = 1\n")
    await line_start.complete()
    prompt = as_dict(await request(client, "codellama/lastPrompt"))
    assert prompt["mode"] == "spm" and prompt["healed"] is None


@pytest.mark.asyncio(loop_scope="module")
async def test_typing_what_the_suggestion_says_is_answered_without_the_model(client: LanguageClient) -> None:
    buf = Buffer(client, "file:///work/ahead.py", SOURCE + "\n\ndef shout(word):\n    return word.")
    result = await buf.complete()
    assert result is not None and result.items, "the model suggested nothing here"
    suggestion = result.items[0].insert_text
    assert isinstance(suggestion, str) and len(suggestion) >= 2
    before = as_dict(await request(client, "codellama/stats"))
    buf.insert(len(buf.text), suggestion[0])
    again = await buf.complete()
    after = as_dict(await request(client, "codellama/stats"))
    assert again is not None and again.items[0].insert_text == suggestion[1:]
    assert after["typed_ahead_hits"] - before["typed_ahead_hits"] == 1
    assert after["generated_tokens"] == before["generated_tokens"]  # no model call


@pytest.mark.asyncio(loop_scope="module")
async def test_stats_report_the_required_counters(client: LanguageClient) -> None:
    stats = as_dict(await request(client, "codellama/stats"))
    for key in ("requests", "completions", "cancelled", "superseded", "typed_ahead_hits", "prompt_tokens",
                "reused_tokens", "prefilled_tokens", "generated_tokens", "latency_ms_p50", "latency_ms_p95"):
        assert key in stats
    assert stats["model_state"] == "ready" and stats["model"]["name"] == "embedded"
    assert stats["decode_step"] == "native"  # the CPU default here (x86-64, AVX2): the native step, no fallback
    assert stats["requests"] >= stats["completions"] > 0
