"""The server object: the state the handlers share, and the inline-completion request from start to finish.

``handlers.py`` registers the LSP methods on one instance of it.  Rules that hold for every request: model
work never runs on the event loop; every request gets an answer (an empty list when there is nothing to
show, an LSP error with a clear message for bad input).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from typing import Any

import cattrs
from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcException
from pygls.lsp.server import LanguageServer

from lsp_server.actions.assistant import Assistant
from lsp_server.completion.core import CompletionCore, NotReadyError, Outcome
from lsp_server.completion.documents import Document, DocumentStore, UnknownDocumentError
from lsp_server.completion.typeahead import TypeAhead
from lsp_server.protocol import Edge, guard, run_stdio, run_tcp, strict_converter
from lsp_server.scheduling import Scheduler, Ticket
from lsp_server.settings import Settings, needs_reload, parse_settings
from lsp_server.stats import Stats
from model_backend.errors import INTERNAL_ERROR
from model_backend.generation import EngineError
from model_backend.loading import ModelLoadError
from model_backend.tokenization import TokenizerError

log = logging.getLogger(__name__)
VERSION = "0.1.0"
STATS = "codellama/stats"
LAST_PROMPT = "codellama/lastPrompt"
EMPTY = lsp.InlineCompletionList(items=[])
# A prefetch waits this long before it takes the worker: enough for a typist's next key to arrive first (measured:
# benchmarks/README.md, "Speed"), far below the time anyone takes to read a suggestion and accept it.
PREFETCH_PAUSE_S = 0.05


class CodeLlamaServer(LanguageServer):
    """The server object: state shared by the handlers."""

    def __init__(self) -> None:
        self.converter: cattrs.Converter = strict_converter()
        super().__init__("codellama-lsp", VERSION, converter_factory=lambda: self.converter)
        self.edge = Edge(self, self.converter, on_cancel=self.cancel_action, on_parse_error=self.report_parse_error)
        self.documents = DocumentStore()
        self.core = CompletionCore(Settings())
        self.scheduler = Scheduler()
        self.stats = Stats()
        self.typeahead = TypeAhead()
        # the next suggestion being computed ahead: (uri, before, after) it is for, its ticket, its task
        self.prefetching: tuple[tuple[str, str, str], Ticket, asyncio.Task[None]] | None = None
        self.assistant = Assistant(self.core)
        self.action_tickets: dict[Any, Ticket] = {}  # by request id, for $/cancelRequest
        self.progress_cancels: dict[str, threading.Event] = {}  # by progress token, for workDoneProgress/cancel
        self.loading: asyncio.Future[Any] | None = None
        self._shown_errors: set[str] = set()
        self._outages: set[str] = set()  # shown messages of faults that pass (engine down, 5xx, timeout)

    # -- the protocol edge (lsp_server.protocol) --------------------------------------------------------
    def feature(self, feature_name: str, options: Any | None = None) -> Any:
        """Register a handler, guarded: its errors reach the client as clean JSON-RPC errors, logged once."""
        register = super().feature(feature_name, options)
        return lambda fn: register(guard(feature_name, fn))

    def command(self, command_name: str) -> Any:
        register = super().command(command_name)
        return lambda fn: register(guard(command_name, fn))

    def serve_stdio(self) -> int:
        """Serve over stdin/stdout until ``exit`` or end of input; the exit code."""
        return run_stdio(self, self.edge)

    def serve_tcp(self, host: str, port: int) -> int:
        return run_tcp(self, self.edge, host, port)

    def cancel_action(self, msg_id: int | str) -> None:
        """``$/cancelRequest`` for a command also stops its decoding.

        pygls runs a command's handler as a task of its own, which the cancellation does not reach (it only
        answers the request with RequestCancelled), so the action's ticket is found by the request id and
        flagged: the engine stops at the next token.
        """
        ticket = self.action_tickets.get(msg_id)
        if ticket is not None:
            ticket.cancel.set()

    # -- messages to the user ------------------------------------------------------------------
    def tell(self, message: str, kind: lsp.MessageType = lsp.MessageType.Warning) -> None:
        """Show a message once per distinct text (no repeated pop-ups) and always log it."""
        log.log(logging.ERROR if kind == lsp.MessageType.Error else logging.WARNING, message)
        if message in self._shown_errors:
            return
        self._shown_errors.add(message)
        self.window_show_message(lsp.ShowMessageParams(type=kind, message=f"codellama-lsp: {message}"))

    def forget_failures(self) -> None:
        """The engine answered: a later outage is told again (once), instead of staying silent for good."""
        self._shown_errors -= self._outages
        self._outages.clear()

    def report_server_error(self, error: Exception, source: Any) -> None:
        """Errors outside any request go to the client's log, not to pop-ups."""
        if isinstance(error, JsonRpcException) and error.code != INTERNAL_ERROR:
            return  # a client's mistake, already answered and logged once by the protocol edge
        what = "malformed JSON from the client" if isinstance(error, json.JSONDecodeError) else "server error"
        message = f"codellama-lsp: {what}: {error}"
        log.error(message)
        self.window_log_message(lsp.LogMessageParams(type=lsp.MessageType.Error, message=message))

    def report_parse_error(self, message: str) -> None:
        """A frame that is not JSON was answered with -32700 (id null); the client's log says why as well."""
        text = f"codellama-lsp: malformed JSON from the client: {message}"
        self.window_log_message(lsp.LogMessageParams(type=lsp.MessageType.Error, message=text))

    # -- model loading -----------------------------------------------------------------------------
    def start_loading(self) -> None:
        """Load the model on the worker with ``$/progress``; errors become one clear message."""
        token = str(uuid.uuid4())
        progress_ok = self.progress_supported()
        if progress_ok:
            self.work_done_progress.create(token)
            self.work_done_progress.begin(token, lsp.WorkDoneProgressBegin(title="codellama: loading model",
                                                                           percentage=0, cancellable=False))
        loop = asyncio.get_running_loop()

        def progress(message: str, percent: int) -> None:
            if progress_ok:
                loop.call_soon_threadsafe(self.work_done_progress.report, token,
                                          lsp.WorkDoneProgressReport(message=message, percentage=percent))

        def job() -> str:
            try:
                return self.core.load(progress)
            except (ModelLoadError, EngineError) as exc:
                self.core.load_error = f"model not loaded: {exc}"
                raise

        future = asyncio.wrap_future(self.scheduler.submit(job))
        self.loading = future

        def done(f: asyncio.Future[Any]) -> None:
            error = f.exception()
            message = f"model ready: {f.result()}" if error is None else str(self.core.load_error or error)
            if progress_ok:
                self.work_done_progress.end(token, lsp.WorkDoneProgressEnd(message=message))
            if error is None:
                log.info(message)
            else:
                self.tell(message, lsp.MessageType.Error)

        future.add_done_callback(done)

    def progress_supported(self) -> bool:
        window = self.client_capabilities.window
        return bool(window and window.work_done_progress)

    def update_settings(self, raw: Any) -> None:
        """Validate and apply settings; reload the model when a model setting changed."""
        new, problems = parse_settings(raw, self.core.settings)
        for problem in problems:
            self.tell(problem)
        old = self.core.settings
        self.core.apply_settings(new)
        if needs_reload(old, new) and self.loading is not None:
            self.start_loading()

    # -- inline completion -------------------------------------------------------------------------
    async def complete(self, params: lsp.InlineCompletionParams) -> lsp.InlineCompletionList:
        """One inline-completion request, start to finish (see module docstring for the rules)."""
        received = time.monotonic()
        self.stats.requests += 1
        if not self.core.settings.enabled:
            return self._empty()
        doc = self.documents.get(params.text_document.uri)
        offset = doc.offset_at(params.position.line, params.position.character)
        line, character = doc.position_at(offset)  # a character past the line's end is clamped to it (LSP)
        position = lsp.Position(line=line, character=character)
        invoked = params.context.trigger_kind == lsp.InlineCompletionTriggerKind.Invoked
        version = doc.version  # the document object is updated in place by later changes
        before, after = doc.text[:offset], doc.text[offset:]
        ticket = self.scheduler.ticket(doc.uri)
        try:
            # Typed-ahead rests answer at once; an invoked request (the user cycling) asks the model for more.
            rests = self.typeahead.lookup(doc.uri, before, after)
            if rests and not invoked:
                self.stats.typed_ahead_hits += 1
                self._prefetch_next(doc, before, after, rests[0])
                return self._answer(rests, position, after, received)
            prefetch = self.core.settings.prefetch and not invoked
            ahead = await self._computed_ahead(doc.uri, before, after) if prefetch else None
            if ahead is not None and not ticket.superseded:
                self.stats.prefetch_hits += 1
                if not ahead:
                    return self._empty()  # the model's answer here, computed ahead, is nothing to show
                self.typeahead.remember(doc.uri, before, after, ahead)
                self._prefetch_next(doc, before, after, ahead[0])
                return self._answer(ahead, position, after, received)
            cut = self._cancel_prefetch()  # this keystroke needs the worker
            outcome = await self._run_model(doc, offset, ticket, invoked, cut)
            if outcome is None:  # superseded before it ran, or no model: what was typed ahead still stands
                return self._answer(rests, position, after, received) if rests and not ticket.superseded \
                    else self._empty()
            if ticket.superseded or version != self._version_now(doc):
                self.stats.superseded += ticket.superseded
                self.stats.stale += not ticket.superseded
                return self._empty()
            texts = list(dict.fromkeys([*rests, *outcome.texts]))[:self.core.settings.suggestions]
            if not texts:
                return self._empty()
            self.typeahead.remember(doc.uri, before, after, texts)
            self._prefetch_next(doc, before, after, texts[0])
            return self._answer(texts, position, after, received)
        except asyncio.CancelledError:
            self.stats.cancelled += 1
            raise
        finally:
            self.scheduler.release(ticket)

    async def _run_model(self, doc: Document, offset: int, ticket: Ticket, invoked: bool,
                         cut_prefetch: bool = False) -> Outcome | None:
        """Prepare on the loop, generate on the worker; None when there is nothing to run.

        The time budget counts from when decoding can start: a request that waited for the model to load
        keeps its whole budget (the first completion after start is not cut to nothing).  ``cut_prefetch``: this
        request cancelled a prefetch running on the worker, so its wait for the worker is what prefetch cost it.
        """
        if self.loading is not None and not self.loading.done():
            await asyncio.wait([self.loading])  # first request while loading: wait; a failure shows below
        start = time.monotonic()
        await self.scheduler.turn()  # the worker is free: a newer request had its chance to supersede this one
        if cut_prefetch:
            self.stats.prefetch_cut += 1
            self.stats.prefetch_wait_ms += (time.monotonic() - start) * 1e3
        if ticket.superseded:  # nothing prepared for it (a burst costs the loop one prepare, not one each)
            self.stats.superseded += 1
            return None
        try:
            prepared = self.core.prepare(doc, offset, now=start, open_docs=self.documents, invoked=invoked)
        except (NotReadyError, TokenizerError) as exc:
            self.tell(str(exc), lsp.MessageType.Error)
            return None
        try:
            want = self.core.settings.suggestions if invoked else 1  # extra suggestions only when asked for
            outcome = await self.scheduler.run(ticket, lambda: self.core.generate(prepared, ticket.cancel, want))
        except EngineError as exc:
            self.stats.errors += 1
            self.tell(f"completion failed: {exc}")
            if getattr(exc, "transient", False):  # a remote engine's passing fault: told again after a recovery
                self._outages.add(f"completion failed: {exc}")
            return None
        if outcome is None:  # superseded before it started
            self.stats.superseded += 1
            return None
        self.forget_failures()
        r = outcome.result
        self.stats.record_generation(r.prompt_tokens, r.reused_tokens, r.prefilled_tokens, len(r.ids),
                                     r.counts_known)
        self.stats.record_speculation(r.timings)
        self.stats.last = {"uri": doc.uri, "mode": prepared.ctx.mode, "fim": prepared.prompt.mode, "stop": r.stop,
                           "prompt_tokens": r.prompt_tokens, "reused_tokens": r.reused_tokens,
                           "answers_tried": outcome.tried, **{k: round(v, 2) for k, v in outcome.timings.items()}}
        log.info("completion %s", self.stats.last)
        return outcome

    # -- the next suggestion, before it is asked for ----------------------------------------------------
    def _prefetch_next(self, doc: Document, before: str, after: str, shown: str) -> None:
        """With ``shown`` on screen: compute on the worker, after this answer, what the model would suggest once
        it is accepted (TAB, TAB, TAB shows each next one at once).

        Any keystroke that needs the worker cancels it (``_cancel_prefetch``), so it costs a real request at most
        the model pass in progress.  Only for the local engine, where the worker is otherwise idle.
        """
        if not self.core.settings.prefetch or self.core.engine is None or not shown.strip():
            return
        rest_of_line = after.split("\n", 1)[0].rstrip("\r")
        if rest_of_line and not rest_of_line.strip() and shown.startswith(rest_of_line):
            after = after[len(rest_of_line):]  # accepting replaces that whitespace (see ``_answer``)
        key = (doc.uri, before + shown, after)
        running = self.prefetching is not None and self.prefetching[0] == key
        if running or self.typeahead.lookup_ahead(*key) is not None:
            return
        self._cancel_prefetch()
        ticket = Ticket(doc.uri)
        task = asyncio.get_running_loop().create_task(self._prefetch(ticket, key, doc.language_id))
        task.add_done_callback(_log_failure)
        self.prefetching = (key, ticket, task)

    async def _prefetch(self, ticket: Ticket, key: tuple[str, str, str], language_id: str | None) -> None:
        """The prefetch job: the real request's pipeline on the text as it will be, kept in the type-ahead store."""
        uri, before, after = key
        try:
            # The answer that triggered it goes out first, and a user still typing sends the next key within this
            # pause: that key cancels the prefetch before it occupies the worker, so it delays nothing.
            await asyncio.sleep(PREFETCH_PAUSE_S)
            if ticket.cancel.is_set():
                return
            virtual = Document(uri, language_id, -1, before + after)
            prepared = self.core.prepare(virtual, len(before), now=time.monotonic(), open_docs=self.documents)
            outcome = await self.scheduler.run(
                ticket, lambda: self.core.generate(prepared, ticket.cancel, 1, record=False))
        except (NotReadyError, TokenizerError, EngineError) as exc:
            log.debug("prefetch skipped: %s", exc)
            return
        finally:
            if self.prefetching is not None and self.prefetching[1] is ticket:
                self.prefetching = None
        if outcome is None or ticket.cancel.is_set() or outcome.result.stop in ("cancelled", "time"):
            log.debug("prefetch cut short")
            return  # cut short: not what a real request would answer
        self.typeahead.remember_ahead(uri, before, after, outcome.texts)  # none to show is an answer too
        self.stats.prefetched += 1
        log.info("prefetched %d suggestion(s) in %.0f ms", len(outcome.texts),
                 outcome.result.prefill_ms + outcome.result.decode_ms)

    async def _computed_ahead(self, uri: str, before: str, after: str) -> list[str] | None:
        """Suggestions computed ahead for exactly this text; waits for a prefetch of it still running."""
        running = self.prefetching
        if running is not None and running[0] == (uri, before, after):
            await asyncio.wait([running[2]])  # never raises; a failed prefetch just leaves nothing
        return self.typeahead.lookup_ahead(uri, before, after)

    def _cancel_prefetch(self) -> bool:
        """Stop the running prefetch; True if it had reached the worker (the caller may wait for its pass)."""
        if self.prefetching is None:
            return False
        ticket = self.prefetching[1]
        ticket.cancel.set()
        self.prefetching = None
        return ticket.started

    def _answer(self, texts: list[str], position: lsp.Position, after: str,
                received: float) -> lsp.InlineCompletionList:
        """One item per suggestion at the cursor, the shown one first.  When only whitespace follows the cursor
        on its line and a suggestion starts with it (column 0 of an indented blank line), its range covers that
        whitespace, so accepting gives the indentation once instead of the suggestion's plus the line's."""
        self.stats.completions += 1
        self.stats.latencies_ms.append((time.monotonic() - received) * 1e3)
        rest_of_line = after.split("\n", 1)[0].rstrip("\r")
        items = []
        for text in texts:
            end = position
            if rest_of_line and not rest_of_line.strip() and text.startswith(rest_of_line):
                end = lsp.Position(line=position.line, character=position.character + len(rest_of_line))
            items.append(lsp.InlineCompletionItem(insert_text=text, range=lsp.Range(start=position, end=end)))
        return lsp.InlineCompletionList(items=items)

    def _empty(self) -> lsp.InlineCompletionList:
        self.stats.empty += 1
        return EMPTY

    def _document(self, uri: str) -> Document:
        """The open document (``UnknownDocumentError``, a -32602 for the client, when it is not open)."""
        return self.documents.get(uri)

    def _version_now(self, doc: Document) -> int | None:
        try:
            return self.documents.get(doc.uri).version
        except UnknownDocumentError:
            return None


def _log_failure(task: asyncio.Task[None]) -> None:
    """A background job's unexpected exception goes to the log (nobody awaits it)."""
    if not task.cancelled() and task.exception() is not None:
        log.error("prefetch failed", exc_info=task.exception())
