"""``workspace/executeCommand`` for the code actions: progress, cancellation, the version guard, applyEdit.

Why here and not in the handlers: one action is a small protocol conversation (progress token created,
partial answers streamed into ``$/progress``, the answer turned into an edit, ``workspace/applyEdit`` sent
and its result reported), and its rules are easiest to check in one place:

* model work runs on the scheduler's worker under its own ticket, so a completion request for the same
  document never supersedes it; both ``$/cancelRequest`` (see ``server.Protocol``) and
  ``window/workDoneProgress/cancel`` set the ticket's flag, which the engine checks after every token;
* an edit is only sent for the document version the command saw, and that version is in the edit
  (``OptionalVersionedTextDocumentIdentifier``), so a client with newer text rejects it as well;
* the answer always says when the model is not instruction-tuned, when the selection was cut, and when
  decoding was cancelled or stopped at the token limit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lsprotocol import types as lsp

from lsp_server.actions import instruct, offers
from lsp_server.actions.assistant import Answer, Job
from lsp_server.actions.offers import DOCSTRING, EXPLAIN, REFACTOR, Refusal, Target

if TYPE_CHECKING:
    from lsp_server.server import CodeLlamaServer

log = logging.getLogger(__name__)
TASKS: dict[str, instruct.Task] = {EXPLAIN: "explain", REFACTOR: "refactor", DOCSTRING: "docstring"}
WORKING = {EXPLAIN: "Code Llama: explaining", REFACTOR: "Code Llama: refactoring",
           DOCSTRING: "Code Llama: writing a docstring"}
MAX_PROGRESS_MESSAGE = 2000  # characters of the streamed answer shown in a progress message (its end)


def not_tuned_note(answer: Answer) -> str:
    return (f"Note: the model answering ({answer.model}) is not instruction-tuned, so this answer may be wrong or "
            "meaningless; set `instructModel` to a Code Llama - Instruct checkpoint for real answers.")


class ActionProgress:
    """``$/progress`` for one action: cancellable, with the answer so far as its message."""

    def __init__(self, ls: CodeLlamaServer, token: str, max_tokens: int) -> None:
        self.ls, self.token, self.max_tokens, self.ended = ls, token, max_tokens, False

    @classmethod
    async def start(cls, ls: CodeLlamaServer, title: str, cancel: threading.Event,
                    max_tokens: int) -> ActionProgress | None:
        """Create and begin the progress (None when the client has no ``workDoneProgress`` or refuses it)."""
        if not ls.progress_supported():
            return None
        token = f"codellama-action-{uuid.uuid4()}"
        ls.progress_cancels[token] = cancel
        try:
            await ls.work_done_progress.create_async(token)
        except Exception as exc:
            log.info("no progress for this action: %s", exc)
            ls.progress_cancels.pop(token, None)
            return None
        ls.work_done_progress.begin(token, lsp.WorkDoneProgressBegin(title=title, cancellable=True,
                                                                     message="reading the code", percentage=0))
        return cls(ls, token, max_tokens)

    def report(self, text: str, tokens: int) -> None:
        if not self.ended:
            percent = min(99, tokens * 100 // max(self.max_tokens, 1))
            self.ls.work_done_progress.report(self.token, lsp.WorkDoneProgressReport(
                message=text[-MAX_PROGRESS_MESSAGE:], percentage=percent, cancellable=True))

    def end(self, message: str) -> None:
        if not self.ended:
            self.ended = True
            self.ls.work_done_progress.end(self.token, lsp.WorkDoneProgressEnd(message=message))
            self.ls.progress_cancels.pop(self.token, None)
            self.ls.work_done_progress.tokens.pop(self.token, None)


async def execute(ls: CodeLlamaServer, command: str, args: Sequence[Any]) -> dict[str, Any]:
    """Run one code-action command; bad arguments raise InvalidParams, everything else is an answer."""
    doc, span, instruction = offers.parse_args(command, args, ls.documents)  # ArgsError: -32602 to the client
    where = offers.target(doc, span, instruction)
    what = ""
    if where is not None and command == DOCSTRING:
        node = offers.docstring_target(doc, where.start, where.end)
        what = offers.describe(node) if node is not None else ""
        if node is None:
            where = None
    if where is None:
        why = ("no Python function or class at this range" if command == DOCSTRING
               else "nothing to work on: the range is empty and not inside a function or class")
        return {"markdown": why} if command == EXPLAIN else {"applied": False, "message": why}
    version = doc.version
    s = ls.core.settings
    job = Job(TASKS[command], offers.selection(where, what), instruction, s.instruct_tokens,
              s.instruct_max_new_tokens)
    ls.stats.actions += 1
    answer = await _ask(ls, job, WORKING[command])
    ls.stats.actions_cancelled += answer.stop == "cancelled"
    ls.stats.last_action = {
        "command": command, "uri": doc.uri, "stop": answer.stop, "generated_tokens": answer.generated_tokens,
        "prompt_tokens": len(answer.prompt.ids) if answer.prompt else 0, "cut": answer.cut,
        "model": answer.model, "instruction_tuned": answer.instruction_tuned, "error": answer.error,
        **{k: round(v, 2) for k, v in answer.timings.items()},
    }
    if command == EXPLAIN:
        return {"markdown": explanation(answer, job)}
    result = await _apply(ls, command, where, version, answer, job)
    ls.stats.last_action["applied"] = result["applied"]
    ls.stats.actions_applied += result["applied"]
    return result


async def _ask(ls: CodeLlamaServer, job: Job, title: str) -> Answer:
    """The model's answer, decoded on the worker with progress and both kinds of cancellation."""
    ticket = ls.scheduler.ticket(f"codellama-action:{uuid.uuid4()}")  # never superseded by completions
    msg_id = ls.protocol.msg_id
    if msg_id is not None:
        ls.action_tickets[msg_id] = ticket
    progress: ActionProgress | None = None
    answer: Answer | None = None
    try:
        progress = await ActionProgress.start(ls, title, ticket.cancel, job.max_new_tokens)
        loop = asyncio.get_running_loop()

        def on_text(text: str, tokens: int) -> None:
            if progress is not None:
                loop.call_soon_threadsafe(progress.report, text, tokens)

        if ls.loading is not None and not ls.loading.done():
            await asyncio.wait([ls.loading])
        answer = await ls.scheduler.run(ticket, lambda: ls.assistant.run(job, on_text, ticket.cancel))
        if answer is None:  # cancelled before it reached the model
            answer = Answer("", "cancelled")
        return answer
    finally:
        ls.scheduler.release(ticket)
        if msg_id is not None:
            ls.action_tickets.pop(msg_id, None)
        if progress is not None:
            progress.end(_summary(answer))


def _summary(answer: Answer | None) -> str:
    if answer is None or answer.stop == "cancelled":
        return "cancelled"
    if answer.error:
        return answer.error
    return f"done ({answer.generated_tokens} tokens)"


def _notes(answer: Answer, job: Job) -> tuple[list[str], list[str]]:
    """(notes that lead the answer, notes that follow it): not instruction-tuned comes first, on its own line;
    then a cut selection, and an answer cut short or cancelled."""
    lead = [not_tuned_note(answer)] if answer.model and not answer.instruction_tuned else []
    rest = []
    if answer.prompt is not None and answer.prompt.cut:
        rest.append(instruct.cut_note(answer.prompt, answer.budget))
    if answer.stop == "cancelled":
        rest.append("Cancelled: decoding was stopped, so the answer is incomplete.")
    elif answer.stop in ("max_tokens", "context"):
        rest.append(f"The answer stopped at the instructMaxNewTokens limit ({job.max_new_tokens} tokens) or at "
                    "the end of the context window.")
    return lead, rest


def explanation(answer: Answer, job: Job) -> str:
    """The ``codellama.explain`` Markdown: the model note first, then the answer (never empty), then the rest."""
    lead, rest = _notes(answer, job)
    if answer.error:
        body = f"**Code Llama could not answer:** {answer.error}"
    else:
        body = instruct.restore(answer.text) or "_(the model returned an empty answer)_"
    return "\n\n".join([*(f"> {n}" for n in lead), body, *(f"> {n}" for n in rest)])


async def _apply(ls: CodeLlamaServer, command: str, where: Target, version: int, answer: Answer,
                 job: Job) -> dict[str, Any]:
    """Turn a refactor / docstring answer into one checked, versioned edit and ask the client to apply it."""
    lead, rest = _notes(answer, job)

    def result(applied: bool, message: str) -> dict[str, Any]:
        return {"applied": applied, "message": "\n".join([*lead, message, *rest])}

    if answer.stop == "cancelled":
        return result(False, "Cancelled: nothing was changed.")
    if answer.error:
        return result(False, f"Code Llama could not answer: {answer.error}. Nothing was changed.")
    now = ls.documents.get(where.doc.uri) if where.doc.uri in ls.documents else None
    if now is None or now is not where.doc or now.version != version:
        after = "was closed" if now is None else f"changed (version {version} → {now.version})"
        return result(False, f"The document {after} while Code Llama was answering; nothing was changed. "
                             "Run the action again on the current text.")
    try:
        if command == REFACTOR:
            edit = offers.plan_rewrite(where, instruct.extract_code(answer.text))
        else:
            edit = offers.plan_docstring(where, instruct.docstring_text(answer.text))
    except Refusal as exc:
        return result(False, f"{str(exc)[:1].upper()}{str(exc)[1:]}.")
    workspace = ls.client_capabilities.workspace
    if not (workspace and workspace.apply_edit):
        return result(False, "The client does not support workspace/applyEdit; nothing was changed.")
    a, b, c, d = edit.span
    text_edit = lsp.TextEdit(range=lsp.Range(start=lsp.Position(line=a, character=b),
                                             end=lsp.Position(line=c, character=d)), new_text=edit.new_text)
    params = lsp.ApplyWorkspaceEditParams(label=offers.TITLES[command], edit=lsp.WorkspaceEdit(document_changes=[
        lsp.TextDocumentEdit(text_document=lsp.OptionalVersionedTextDocumentIdentifier(uri=where.doc.uri,
                                                                                         version=version),
                             edits=[text_edit])]))
    try:
        response = await ls.workspace_apply_edit_async(params)
    except Exception as exc:
        return result(False, f"The editor did not apply the edit: {exc}")
    refused = apply_edit_refusal(response)
    if refused is not None:
        return result(False, f"The editor did not apply the edit: {refused}")
    what = "Rewrote the selection" if command == REFACTOR else "Inserted the docstring"
    return result(True, f"{what} (lines {a + 1}–{c + 1}).")


def apply_edit_refusal(reply: Any) -> str | None:
    """None when the client's ``workspace/applyEdit`` reply is a well-formed ``{applied: true}``; else why not.

    The reply arrives as plain JSON (the protocol edge does not trust it): anything but a boolean ``true`` in
    ``applied`` counts as not applied.
    """
    applied = reply.get("applied") if isinstance(reply, dict) else getattr(reply, "applied", None)
    if applied is True:
        return None
    if applied is False:
        reason = reply.get("failureReason") if isinstance(reply, dict) else getattr(reply, "failure_reason", None)
        return reason if isinstance(reason, str) and reason else "no reason given"
    return f"its reply was malformed ({json.dumps(reply, default=str)[:200]}), so it counts as not applied"
