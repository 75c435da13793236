"""Several suggestions over LSP: the real server, the real embedded model.

While typing (Automatic) the server answers as it always did and decodes nothing extra; when the user asks
or cycles (Invoked, as VS Code's "Show Next Inline Suggestion" sends) it offers up to ``suggestions``
distinct items, the one shown while typing first; typing the start of any of them answers from it.
"""

from __future__ import annotations

import pytest
import pytest_lsp
from lsprotocol import types as lsp
from pytest_lsp import LanguageClient

from tests.editors.sample import ROW, STACK, SUGGESTION, TYPED
from tests.lsp.editor import CAPABILITIES, SERVER, Buffer, as_dict, request

LINES = STACK.split("\n")
AT_DOT = "\n".join([*LINES[:ROW], TYPED])  # "        self.items." at the end of push
BLANK_LINE_IN_BODY = "def first_even(numbers):\n    for n in numbers:\n"  # the hole: above an indented return
AFTER_BLANK = "\n            return n\n    return None\n"


@pytest_lsp.fixture(config=SERVER, scope="module")
async def client(lsp_client: LanguageClient):  # type: ignore[no-untyped-def]
    await lsp_client.initialize_session(lsp.InitializeParams(
        capabilities=CAPABILITIES, initialization_options={"timeBudgetMs": 60000, "maxNewTokens": 32}))  # a busy CPU
    yield
    await lsp_client.shutdown_session()


def texts(result: lsp.InlineCompletionList | None) -> list[str]:
    assert result is not None
    return [item.insert_text for item in result.items if isinstance(item.insert_text, str)]


async def last(client: LanguageClient) -> dict:
    return as_dict(await request(client, "codellama/stats"))


@pytest.mark.asyncio(loop_scope="module")
async def test_invoked_offers_more_distinct_items_with_the_typing_answer_first(client: LanguageClient) -> None:
    buf = Buffer(client, "file:///work/several.py", AT_DOT)
    automatic = texts(await buf.complete())
    assert automatic == [SUGGESTION]  # the answer fits here: nothing else is decoded while typing
    assert (await last(client))["last"]["answers_tried"] == 1
    invoked = texts(await buf.complete(invoked=True))
    assert len(invoked) == 3 and len(set(invoked)) == 3, invoked  # the default `suggestions`
    assert invoked[0] == SUGGESTION
    assert all(t.strip() and "\n" not in t for t in invoked)  # mid-statement: one line each


@pytest.mark.asyncio(loop_scope="module")
async def test_blank_line_items_are_distinct_and_each_fits(client: LanguageClient) -> None:
    buf = Buffer(client, "file:///work/blank.py", BLANK_LINE_IN_BODY + AFTER_BLANK)
    offset = len(BLANK_LINE_IN_BODY)
    automatic = texts(await buf.complete(offset))
    invoked = texts(await buf.complete(offset, invoked=True))
    assert automatic and invoked[0] == automatic[0]
    assert len(invoked) > len(automatic) and len(set(invoked)) == len(invoked), invoked
    for text in invoked:  # each accepted into the file still compiles (the body below stays a body)
        compile(BLANK_LINE_IN_BODY + text + AFTER_BLANK, "<accepted>", "exec")


@pytest.mark.asyncio(loop_scope="module")
async def test_typing_the_second_item_is_answered_from_it_without_the_model(client: LanguageClient) -> None:
    buf = Buffer(client, "file:///work/cycle.py", AT_DOT)
    items = texts(await buf.complete(invoked=True))
    second = items[1]
    typed = next(second[:n] for n in range(1, len(second)) if not items[0].startswith(second[:n]))
    before = await last(client)
    buf.insert(len(buf.text), typed)
    again = texts(await buf.complete())
    after = await last(client)
    assert again[0] == second[len(typed):]
    assert after["typed_ahead_hits"] - before["typed_ahead_hits"] == 1
    assert after["generated_tokens"] == before["generated_tokens"]  # no model call


@pytest.mark.asyncio(loop_scope="module")
async def test_the_suggestions_setting_caps_the_items(client: LanguageClient) -> None:
    client.workspace_did_change_configuration(lsp.DidChangeConfigurationParams(settings={"suggestions": 1}))
    buf = Buffer(client, "file:///work/one.py", AT_DOT)
    assert texts(await buf.complete(invoked=True)) == [SUGGESTION]
    assert (await last(client))["last"]["answers_tried"] == 1
    client.workspace_did_change_configuration(lsp.DidChangeConfigurationParams(settings={"suggestions": 5}))
    buf = Buffer(client, "file:///work/five.py", AT_DOT)
    five = texts(await buf.complete(invoked=True))
    assert len(five) == 5 and len(set(five)) == 5 and five[0] == SUGGESTION, five
    client.workspace_did_change_configuration(lsp.DidChangeConfigurationParams(settings={"suggestions": 3}))
