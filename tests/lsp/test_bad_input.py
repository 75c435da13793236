"""Bad input over real LSP: every request is answered, the server keeps serving, nothing is lost."""

from __future__ import annotations

import asyncio

import pytest
import pytest_lsp
from lsprotocol import types as lsp
from pytest_lsp import LanguageClient

from tests.lsp.editor import CAPABILITIES, SERVER, Buffer, as_dict, request


@pytest_lsp.fixture(config=SERVER, scope="module")
async def client(lsp_client: LanguageClient):  # type: ignore[no-untyped-def]
    await lsp_client.initialize_session(lsp.InitializeParams(capabilities=CAPABILITIES))
    yield
    await lsp_client.shutdown_session()


async def still_serving(client: LanguageClient) -> None:
    buf = Buffer(client, "file:///work/alive.py", "def add(a, b):\n    return a")
    result = await buf.complete()
    assert result is not None


def completion_params(uri: str, line: int, character: int) -> lsp.InlineCompletionParams:
    return lsp.InlineCompletionParams(
        text_document=lsp.TextDocumentIdentifier(uri=uri), position=lsp.Position(line=line, character=character),
        context=lsp.InlineCompletionContext(trigger_kind=lsp.InlineCompletionTriggerKind.Invoked))


@pytest.mark.asyncio(loop_scope="module")
async def test_unknown_document_gets_a_clear_error(client: LanguageClient) -> None:
    with pytest.raises(Exception, match="not open"):
        await client.text_document_inline_completion_async(completion_params("file:///nowhere.py", 0, 0))
    await still_serving(client)


@pytest.mark.asyncio(loop_scope="module")
async def test_position_past_the_end_gets_a_clear_error(client: LanguageClient) -> None:
    Buffer(client, "file:///work/short.py", "x = 1\n")
    with pytest.raises(Exception, match="line 40"):
        await client.text_document_inline_completion_async(completion_params("file:///work/short.py", 40, 0))
    # a character past the end of a line is clamped, as LSP says
    result = await client.text_document_inline_completion_async(completion_params("file:///work/short.py", 0, 99))
    assert result is not None
    await still_serving(client)


@pytest.mark.asyncio(loop_scope="module")
async def test_malformed_json_and_invalid_params_do_not_stop_the_server(client: LanguageClient) -> None:
    stdin = client._server.stdin  # type: ignore[union-attr]
    assert stdin is not None

    def send_raw(body: bytes) -> None:
        stdin.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

    send_raw(b'{"jsonrpc": "2.0", "id": 7, "method": "textDocument/inlineCompletion", "params": {"nonsense": 1')
    # a request whose params do not match the schema is answered with an error, not dropped
    answer: asyncio.Future = asyncio.get_running_loop().create_future()
    client.protocol._request_futures["bad-params"] = answer  # route the raw request's answer to us
    send_raw(b'{"jsonrpc": "2.0", "id": "bad-params", "method": "textDocument/inlineCompletion", '
             b'"params": {"position": "here"}}')
    await stdin.drain()
    with pytest.raises(Exception, match=r"(?i)invalid params"):
        await asyncio.wait_for(answer, timeout=10)
    await still_serving(client)
    assert any("malformed JSON" in m.message for m in client.log_messages)


@pytest.mark.asyncio(loop_scope="module")
async def test_huge_file_is_answered_with_bounded_work(client: LanguageClient) -> None:
    line = "value_{0} = compute(value_{0} - 1, factor=0.5)  # keep going\n"
    text = "".join(line.format(i) for i in range(25_000)) + "total = value_1 + "  # ~1.5 MB
    assert len(text) > 1_000_000
    buf = Buffer(client, "file:///work/huge.py", text)
    result = await asyncio.wait_for(buf.complete(), timeout=60)
    assert result is not None
    prompt = as_dict(await request(client, "codellama/lastPrompt"))
    assert len(prompt["ids"]) < 2500  # windows, not the whole file
    await still_serving(client)


@pytest.mark.asyncio(loop_scope="module")
async def test_binary_and_odd_text_is_not_a_crash(client: LanguageClient) -> None:
    text = "data = b'\x00\x01\x02'\n\x00\x00\ufffd\udcff weird \u2028 line\ns = '"
    buf = Buffer(client, "file:///work/binary.py", text)
    buf.insert(len(buf.text), "\x00")
    result = await buf.complete()
    assert result is not None
    await still_serving(client)


@pytest.mark.asyncio(loop_scope="module")
async def test_buffer_text_is_never_clobbered(client: LanguageClient) -> None:
    """The server only ever answers with insertions at the cursor: no edit that could replace user text."""
    buf = Buffer(client, "file:///work/keep.py", "def keep(x):\n    return x  # do not touch\n")
    cursor = buf.text.index("return x") + len("return x")
    result = await buf.complete(cursor)
    assert result is not None
    for item in result.items:
        assert item.range.start == item.range.end == buf.position(cursor)
