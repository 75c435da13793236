"""Code actions end to end: the real server process, the real embedded model, over stdio with pytest-lsp.

The embedded model is not instruction-tuned, so its answers are fluent nonsense: these tests check the
protocol and the guards (notes, the parse check, the version guard, cancellation), not the answers' quality.
Greedy decoding makes its answers reproducible, which the "does not parse" and "parses" cases rely on.
"""

from __future__ import annotations

import ast
import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcInvalidParams
from pytest_lsp import LanguageClient

from model_backend.embedded import WEIGHTS_DIR
from tests.lsp.editor import SERVER, Buffer, as_dict, offset_of, replace, request

SOURCE = '''import os
import sys


class WordCounter:
    def count_words(self, text):
        words = text.split()
        return len(words)


def main():
    total = 0
    for name in sys.argv[1:]:
        total += 1
    print(total)
'''
NOT_TUNED = "(model not instruction-tuned)"
CAPABILITIES = lsp.ClientCapabilities(
    window=lsp.WindowClientCapabilities(work_done_progress=True),
    workspace=lsp.WorkspaceClientCapabilities(
        apply_edit=True, workspace_edit=lsp.WorkspaceEditClientCapabilities(document_changes=True)))


class Editor:
    """The client side: open buffers, the edits the server asked for, and hooks into progress messages."""

    def __init__(self) -> None:
        self.buffers: dict[str, Buffer] = {}
        self.edits: list[lsp.ApplyWorkspaceEditParams] = []
        self.on_create: Callable[[str], None] | None = None  # progress token, before the create is answered
        self.on_report: Callable[[str], None] | None = None  # progress token, on each report
        self.init: lsp.InitializeResult | None = None

    def open(self, client: LanguageClient, uri: str, text: str = SOURCE) -> Buffer:
        self.buffers[uri] = buf = Buffer(client, uri, text)
        return buf

    def apply(self, params: lsp.ApplyWorkspaceEditParams) -> lsp.ApplyWorkspaceEditResult:
        """What an editor does: refuse an edit for another version, else apply it and send didChange."""
        self.edits.append(params)
        for change in params.edit.document_changes or []:
            assert isinstance(change, lsp.TextDocumentEdit)
            buf = self.buffers[change.text_document.uri]
            if change.text_document.version != buf.version:
                return lsp.ApplyWorkspaceEditResult(applied=False, failure_reason="the document has changed")
            for edit in change.edits:
                start, end = offset_of(buf.text, edit.range.start), offset_of(buf.text, edit.range.end)
                replace(buf, start, end, edit.new_text)
        return lsp.ApplyWorkspaceEditResult(applied=True)


EDITOR = Editor()


def hook(client: LanguageClient, method: str, before: Callable[[Any], None]) -> None:
    """Run ``before(params)`` ahead of pytest-lsp's own handler for ``method`` (it records progress)."""
    features = client.protocol.fm.features
    original = features[method]

    def wrapped(params: Any) -> Any:
        before(params)
        return original(params)

    features[method] = wrapped


@pytest_lsp.fixture(config=SERVER, scope="module")
async def client(lsp_client: LanguageClient):  # type: ignore[no-untyped-def]
    @lsp_client.feature(lsp.WORKSPACE_APPLY_EDIT)
    def apply_edit(params: lsp.ApplyWorkspaceEditParams) -> lsp.ApplyWorkspaceEditResult:
        return EDITOR.apply(params)

    hook(lsp_client, lsp.WINDOW_WORK_DONE_PROGRESS_CREATE,
         lambda p: EDITOR.on_create(str(p.token)) if EDITOR.on_create else None)
    hook(lsp_client, lsp.PROGRESS, lambda p: EDITOR.on_report(str(p.token))
         if EDITOR.on_report and p.value.get("kind") == "report" else None)
    # lsprotocol's client-side converter reads any CodeAction that has a `command` as a Command (its union hook
    # only looks for the key), losing the kind; editors parse it correctly.  Take the raw JSON instead.
    result_type = lsp_client.protocol.get_result_type
    lsp_client.protocol.get_result_type = (  # type: ignore[method-assign]
        lambda method: None if method == lsp.TEXT_DOCUMENT_CODE_ACTION else result_type(method))
    EDITOR.init = await lsp_client.initialize_session(lsp.InitializeParams(
        capabilities=CAPABILITIES, initialization_options={"instructMaxNewTokens": 48}))
    yield
    await lsp_client.shutdown_session()


def rng(a: int, b: int, c: int, d: int) -> dict[str, Any]:
    return {"start": {"line": a, "character": b}, "end": {"line": c, "character": d}}


def lsp_range(a: int, b: int, c: int, d: int) -> lsp.Range:
    return lsp.Range(start=lsp.Position(line=a, character=b), end=lsp.Position(line=c, character=d))


async def run(client: LanguageClient, command: str, *args: Any, msg_id: str | None = None) -> dict[str, Any]:
    params = lsp.ExecuteCommandParams(command=command, arguments=list(args))
    result = await client.protocol.send_request_async(lsp.WORKSPACE_EXECUTE_COMMAND, params, msg_id=msg_id)
    return as_dict(result)


def configure(client: LanguageClient, **settings: Any) -> None:
    client.workspace_did_change_configuration(lsp.DidChangeConfigurationParams(settings=settings))


async def stats(client: LanguageClient) -> dict[str, Any]:
    return as_dict(await request(client, "codellama/stats"))


async def code_actions(client: LanguageClient, buf: Buffer, r: lsp.Range,
                       only: list[str] | None = None) -> list[dict[str, Any]]:
    """The code actions as JSON objects."""
    result = await client.text_document_code_action_async(lsp.CodeActionParams(
        text_document=lsp.TextDocumentIdentifier(uri=buf.uri), range=r,
        context=lsp.CodeActionContext(diagnostics=[], only=only)))
    assert result is not None
    return as_dict(result)


@pytest.mark.asyncio(loop_scope="module")
async def test_capabilities_advertise_the_actions_and_commands(client: LanguageClient) -> None:
    assert EDITOR.init is not None
    caps = EDITOR.init.capabilities
    assert isinstance(caps.code_action_provider, lsp.CodeActionOptions)
    assert list(caps.code_action_provider.code_action_kinds or []) == [
        "refactor.explain", "refactor.rewrite", "refactor.rewrite.docstring"]
    assert caps.execute_command_provider is not None
    assert set(caps.execute_command_provider.commands) >= {
        "codellama.explain", "codellama.refactor", "codellama.docstring"}


@pytest.mark.asyncio(loop_scope="module")
async def test_actions_are_listed_for_a_selection_without_a_model_call(client: LanguageClient) -> None:
    buf = EDITOR.open(client, "file:///work/list.py")
    before = await stats(client)
    found = await code_actions(client, buf, lsp_range(11, 4, 14, 16))
    assert [(a["kind"], a["command"]["command"]) for a in found] == [
        ("refactor.explain", "codellama.explain"), ("refactor.rewrite", "codellama.refactor"),
        ("refactor.rewrite.docstring", "codellama.docstring")]
    assert [a["title"] for a in found] == [f"Explain with Code Llama {NOT_TUNED}",
                                           f"Refactor with Code Llama {NOT_TUNED}",
                                           f"Add docstring with Code Llama {NOT_TUNED}"]
    assert all(a["command"]["title"] == a["title"] for a in found)
    assert [a["command"]["arguments"] for a in found] == [
        [buf.uri, rng(11, 4, 14, 16)], [buf.uri, rng(11, 4, 14, 16)], [buf.uri, rng(10, 0, 14, 16)]]
    # an empty selection inside a method: the method; context.only filters by kind
    inside = await code_actions(client, buf, lsp_range(6, 12, 6, 12), only=["refactor.rewrite"])
    assert [a["kind"] for a in inside] == ["refactor.rewrite", "refactor.rewrite.docstring"]
    assert all(a["command"]["arguments"] == [buf.uri, rng(5, 0, 7, 25)] for a in inside)
    assert await code_actions(client, buf, lsp_range(0, 2, 0, 2)) == []  # an import: nothing around it
    after = await stats(client)
    assert after["actions"] == before["actions"] and after["generated_tokens"] == before["generated_tokens"]
    assert after["last_action"] == before["last_action"]


@pytest.mark.asyncio(loop_scope="module")
async def test_explain_streams_progress_and_says_the_model_is_not_instruction_tuned(client: LanguageClient) -> None:
    buf = EDITOR.open(client, "file:///work/explain.py")
    known = set(client.progress_reports)
    result = await run(client, "codellama.explain", buf.uri, rng(5, 0, 5, 0))
    markdown = result["markdown"]
    first_line, _, rest = markdown.partition("\n")
    assert first_line.startswith("> Note: the model answering (embedded) is not instruction-tuned")
    assert rest.strip()  # an answer (nonsense from this model, but there)
    assert "stopped at the instructMaxNewTokens limit (48 tokens)" in markdown
    tokens = [t for t in client.progress_reports if t not in known]
    assert len(tokens) == 1
    values = client.progress_reports[tokens[0]]
    assert values[0].kind == "begin" and values[0].cancellable and values[-1].kind == "end"
    reports = [v for v in values if v.kind == "report"]
    assert len(reports) == 48 // 8  # every 8 tokens, the answer so far
    assert reports[-1].message and reports[-1].message in markdown
    assert len(reports[0].message or "") < len(reports[-1].message)  # it grows as it is generated
    last = (await stats(client))["last_action"]
    assert last["command"] == "codellama.explain" and last["stop"] == "max_tokens"
    assert last["generated_tokens"] == 48 and last["instruction_tuned"] is False
    prompt = as_dict(await request(client, "codellama/lastPrompt"))
    assert prompt["mode"] == "instruct" and prompt["healed"] is None  # nothing healed: null, as for completions


# A frozen copy of lsp_server/stats.py as it was when the two cases below were found (greedy decoding of the
# embedded model depends on every byte of the prompt, so the file must not follow later edits of the original).
STATS_SOURCE = '''\
"""Cumulative counters and latency percentiles for ``codellama/stats`` (what users ask: is the cache working?)."""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

LATENCY_WINDOW = 1000  # percentiles over the most recent completions


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


@dataclass
class Stats:
    """Counters since the server started.  Updated only on the event-loop thread."""

    requests: int = 0  # inline-completion requests received
    completions: int = 0  # answered with a non-empty suggestion
    empty: int = 0  # answered with nothing to show (post-processing dropped it, model not ready, ...)
    cancelled: int = 0  # $/cancelRequest from the client
    superseded: int = 0  # a newer request for the same document replaced this one
    stale: int = 0  # the document changed while computing; the result was dropped
    typed_ahead_hits: int = 0  # answered from the previous suggestion without the model
    errors: int = 0
    prompt_tokens: int = 0
    reused_tokens: int = 0  # prompt tokens whose keys/values came from the cache
    prefilled_tokens: int = 0  # prompt tokens that had to be computed
    generated_tokens: int = 0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    last: dict[str, Any] = field(default_factory=dict)  # the last request's per-stage timings
    actions: int = 0  # codellama.explain / refactor / docstring commands run
    actions_applied: int = 0  # edits the client applied
    actions_cancelled: int = 0  # stopped by $/cancelRequest or by cancelling their progress
    last_action: dict[str, Any] = field(default_factory=dict)  # command, stop, tokens, cut, model, outcome

    def record_generation(self, prompt: int, reused: int, prefilled: int, generated: int) -> None:
        self.prompt_tokens += prompt
        self.reused_tokens += reused
        self.prefilled_tokens += prefilled
        self.generated_tokens += generated

    def to_json(self) -> dict[str, Any]:
        """The ``codellama/stats`` answer: counters plus latency p50/p95 over recent completions."""
        data = asdict(self)
        lat = list(data.pop("latencies_ms"))
        data["latency_ms_p50"] = percentile(lat, 50)
        data["latency_ms_p95"] = percentile(lat, 95)
        data["latency_samples"] = len(lat)
        return data
'''
STATS_URI = "file:///work/stats.py"
FIELD = rng(33, 4, 33, 81)  # the whole `reused_tokens: int = 0  # prompt tokens whose ...` field, in the dataclass


async def refactor_field(client: LanguageClient, tokens: int, uri: str) -> tuple[Buffer, dict[str, Any]]:
    buf = EDITOR.open(client, uri, STATS_SOURCE)
    configure(client, instructMaxNewTokens=tokens)
    try:
        return buf, await run(client, "codellama.refactor", buf.uri, FIELD)
    finally:
        configure(client, instructMaxNewTokens=48)


@pytest.mark.asyncio(loop_scope="module")
async def test_refactor_refuses_an_answer_that_does_not_parse(client: LanguageClient) -> None:
    """How this case was found: a search over the lines of a few repository files, refactoring each with the
    greedy answer cut after 1..64 tokens, printing which cut lengths parse.  For this field the answer is
    "` is a no-op, so a new code can be rewritten ...\n\n```python\nimport sys\nimport threading\n...": cut at
    33 tokens, its (unclosed) code block ends in "import sys\nimport", which tree-sitter cannot parse."""
    edits = len(EDITOR.edits)
    buf, result = await refactor_field(client, 33, STATS_URI)
    assert result["applied"] is False
    assert result["message"].startswith("Note: the model answering (embedded) is not instruction-tuned")
    assert "does not parse" in result["message"] and "nothing was changed" in result["message"]
    assert "stopped at the instructMaxNewTokens limit (33 tokens)" in result["message"]
    assert len(EDITOR.edits) == edits and buf.text == STATS_SOURCE and buf.version == 1
    last = (await stats(client))["last_action"]
    assert last["generated_tokens"] == 33 and last["applied"] is False


@pytest.mark.asyncio(loop_scope="module")
async def test_refactor_applies_an_edit_that_parses(client: LanguageClient) -> None:
    """The same field and answer (found as above), one token longer: at 34 tokens the code block is
    "import sys\nimport threading", which parses in the class body once re-indented (nonsense, but valid
    Python: this model is not instruction-tuned, which the message says first)."""
    edits = len(EDITOR.edits)
    buf, result = await refactor_field(client, 34, "file:///work/parses/stats.py")
    assert result["applied"] is True, result["message"]
    assert result["message"].startswith("Note: the model answering (embedded) is not instruction-tuned")
    assert len(EDITOR.edits) == edits + 1
    change = EDITOR.edits[-1].edit.document_changes[0]  # type: ignore[index]
    assert isinstance(change, lsp.TextDocumentEdit) and change.text_document.version == 1
    assert len(change.edits) == 1 and change.edits[0].range == lsp_range(33, 4, 33, 81)  # exactly the selection
    assert change.edits[0].new_text == "import sys\n    import threading"
    ast.parse(buf.text)  # the client's text after the edit is valid Python
    assert buf.version == 2 and buf.text.split("\n")[33:35] == ["    import sys", "    import threading"]


@pytest.mark.asyncio(loop_scope="module")
async def test_docstring_is_inserted_as_the_first_statement(client: LanguageClient) -> None:
    buf = EDITOR.open(client, "file:///work/doc.py")
    result = await run(client, "codellama.docstring", buf.uri, rng(10, 0, 14, 16))
    assert result["applied"] is True, result["message"]
    assert result["message"].startswith("Note: the model answering (embedded) is not instruction-tuned")
    edit = EDITOR.edits[-1].edit.document_changes[0].edits[0]  # type: ignore[index, union-attr]
    assert edit.range == lsp_range(11, 0, 11, 0)  # inserted before the body's first line
    main = ast.parse(buf.text).body[-1]
    assert isinstance(main, ast.FunctionDef) and main.name == "main"
    assert ast.get_docstring(main) and isinstance(main.body[1], ast.Assign)
    assert buf.text.endswith(SOURCE[SOURCE.index("    total = 0"):])


@pytest.mark.asyncio(loop_scope="module")
async def test_a_document_changed_while_the_model_answers_is_never_edited(client: LanguageClient) -> None:
    """The edit happens in the progress create handler, so the server has it before it decodes: deterministic."""
    buf = EDITOR.open(client, "file:///work/stale.py")
    edits = len(EDITOR.edits)
    EDITOR.on_create = lambda token: replace(buf, 0, 0, "# edited meanwhile\n")
    try:
        result = await run(client, "codellama.refactor", buf.uri, rng(11, 4, 14, 16))
    finally:
        EDITOR.on_create = None
    assert result["applied"] is False
    assert "changed (version 1 → 2)" in result["message"] and "nothing was changed" in result["message"]
    assert len(EDITOR.edits) == edits and buf.text == "# edited meanwhile\n" + SOURCE
    last = (await stats(client))["last_action"]
    assert last["generated_tokens"] > 0  # the model did answer: the guard is on the answer, not before it


async def wait_for_cancelled(client: LanguageClient, before: int) -> dict[str, Any]:
    for _ in range(200):  # the answer to a cancelled request comes first; the worker finishes right after
        now = await stats(client)
        if now["actions_cancelled"] > before:
            return now
        await asyncio.sleep(0.05)
    raise AssertionError("the cancelled action never finished")


@pytest.mark.asyncio(loop_scope="module")
async def test_cancelling_the_progress_stops_decoding(client: LanguageClient) -> None:
    buf = EDITOR.open(client, "file:///work/cancel_progress.py")
    configure(client, instructMaxNewTokens=1000)
    before = await stats(client)

    def cancel(token: str) -> None:
        EDITOR.on_report = None  # once
        client.protocol.notify(lsp.WINDOW_WORK_DONE_PROGRESS_CANCEL, lsp.WorkDoneProgressCancelParams(token=token))

    EDITOR.on_report = cancel
    try:
        result = await run(client, "codellama.explain", buf.uri, rng(10, 0, 14, 16))
    finally:
        EDITOR.on_report = None
        configure(client, instructMaxNewTokens=48)
    assert "Cancelled: decoding was stopped" in result["markdown"]
    after = await wait_for_cancelled(client, before["actions_cancelled"])
    assert after["last_action"]["stop"] == "cancelled"
    assert 8 <= after["last_action"]["generated_tokens"] < 1000  # stopped after the first report, not at the limit


@pytest.mark.asyncio(loop_scope="module")
async def test_cancel_request_stops_decoding(client: LanguageClient) -> None:
    buf = EDITOR.open(client, "file:///work/cancel_request.py")
    configure(client, instructMaxNewTokens=1000)
    before = await stats(client)

    def cancel(token: str) -> None:
        EDITOR.on_report = None
        client.protocol.notify(lsp.CANCEL_REQUEST, lsp.CancelParams(id="explain-to-cancel"))

    EDITOR.on_report = cancel
    try:
        with pytest.raises(Exception, match=r"(?i)cancel"):
            await run(client, "codellama.explain", buf.uri, rng(10, 0, 14, 16), msg_id="explain-to-cancel")
    finally:
        EDITOR.on_report = None
        configure(client, instructMaxNewTokens=48)
    after = await wait_for_cancelled(client, before["actions_cancelled"])
    assert after["last_action"]["stop"] == "cancelled"
    assert 8 <= after["last_action"]["generated_tokens"] < 1000


@pytest.mark.asyncio(loop_scope="module")
async def test_bad_arguments_get_invalid_params_and_the_server_keeps_serving(client: LanguageClient) -> None:
    buf = EDITOR.open(client, "file:///work/bad.py")
    cases = [
        ("codellama.explain", [], "expects arguments \\[uri, range\\], got 0"),
        ("codellama.explain", [buf.uri], "got 1"),
        ("codellama.refactor", [buf.uri, rng(0, 0, 0, 1), "x", "y"], "got 4"),
        ("codellama.explain", [7, rng(0, 0, 0, 1)], "URI string"),
        ("codellama.explain", ["file:///work/never-opened.py", rng(0, 0, 0, 1)], "not open"),
        ("codellama.docstring", [buf.uri, "line 3"], "LSP Range"),
        ("codellama.explain", [buf.uri, rng(0, 0, 99, 0)], "outside the document"),
        ("codellama.refactor", [buf.uri, rng(0, 0, 1, 0), {"do": "it"}], "instruction must be a string"),
        ("codellama.unknown", [buf.uri, rng(0, 0, 1, 0)], "not defined"),
    ]
    for command, args, message in cases:
        with pytest.raises(JsonRpcInvalidParams, match=message):
            await run(client, command, *args)
    found = await code_actions(client, buf, lsp_range(11, 0, 12, 0))
    assert found and (await buf.complete()) is not None  # still serving


@pytest.mark.asyncio(loop_scope="module")
async def test_instruct_model_is_loaded_lazily_and_its_errors_are_answers(client: LanguageClient,
                                                                          tmp_path: Path) -> None:
    """A copy of the embedded weights in a folder named like an Instruct checkpoint: titles and answers then
    carry no note (the name is what says so; the weights are the same tiny model)."""
    folder = tmp_path / "tiny-code-instruct"
    shutil.copytree(WEIGHTS_DIR, folder)
    buf = EDITOR.open(client, "file:///work/instruct_model.py")
    try:
        configure(client, instructModel="/no/such/instruct/model")
        result = await run(client, "codellama.explain", buf.uri, rng(10, 0, 14, 16))
        assert "could not answer" in result["markdown"] and "/no/such/instruct/model" in result["markdown"]
        assert "does not exist" in result["markdown"]
        configure(client, instructModel=str(folder))
        titles = [a["title"] for a in await code_actions(client, buf, lsp_range(11, 0, 12, 0))]
        assert titles and not any(NOT_TUNED in t for t in titles)
        result = await run(client, "codellama.explain", buf.uri, rng(10, 0, 14, 16))
        assert "Note:" not in result["markdown"].split("\n")[0] and result["markdown"].strip()
        last = (await stats(client))["last_action"]
        assert last["model"] == str(folder) and last["instruction_tuned"] is True
        assert (await stats(client))["model"]["name"] == "embedded"  # completions keep their own model
    finally:
        configure(client, instructModel=None)
    assert await buf.complete() is not None
