"""The completion pipeline as plain Python: context → prompt → engine → post-processing.

No LSP types here: the server's handlers and the ``complete`` CLI both call this core, so what the CLI
prints is exactly what an editor would get.  ``prepare`` is cheap and runs on the event loop (it reads the
live document); ``generate`` runs on the model worker and only touches immutable inputs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from lsp_server import crossfile
from lsp_server.context import CompletionContext, ContextBudget, build_context
from lsp_server.crossfile import CrossFile, Snippet
from lsp_server.documents import Document
from lsp_server.postprocess import finalize, stop_reason
from lsp_server.prompts import Prompt, build_prompt, render, strip_healed
from lsp_server.settings import Settings
from model_backend.engine import Engine, EngineError, GenerationRequest, GenerationResult
from model_backend.loading import LoadedModel, LoadSpec, Progress, load
from model_backend.tokenization import TokenizerError

log = logging.getLogger(__name__)


class NotReadyError(Exception):
    """No model is loaded (still loading, or the load failed: the message says why)."""


@dataclass(frozen=True)
class Prepared:
    """Everything the worker needs for one completion, computed on the event loop."""

    uri: str
    ctx: CompletionContext
    prompt: Prompt
    max_new_tokens: int
    deadline: float
    context_ms: float
    prompt_ms: float
    crossfile_ms: float = 0.0
    snippets: tuple[Snippet, ...] = ()  # other files' code placed before the local prefix


@dataclass
class Outcome:
    """A finished completion: the suggestion (None = nothing to show) and how it was made."""

    text: str | None
    raw: str
    result: GenerationResult
    timings: dict[str, float] = field(default_factory=dict)


class CompletionCore:
    """Owns the loaded model and its engine; one instance per server."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loaded: LoadedModel | None = None
        self.engine: Engine | None = None
        self.load_error: str | None = None
        self.last_prompt: dict[str, object] = {}
        self.recent_stops: deque[tuple[str, str]] = deque(maxlen=16)  # (uri, why decoding ended), by the worker
        self.crossfile = CrossFile()  # workspace folders, parsed other files, recent edits (event loop only)
        self.crossfile_style: crossfile.Style = "code"

    # -- model lifetime (worker thread) ----------------------------------------------------------
    def load(self, progress: Progress | None = None) -> LoadedModel:
        """Load the configured model and warm the engine up; raises ``ModelLoadError`` with the fix."""
        s = self.settings
        self.loaded, self.engine, self.load_error = None, None, None
        loaded = load(LoadSpec(s.model, s.quantization, s.device, s.dtype, s.threads), progress)
        engine = Engine(loaded.model, s.context_window, reuse_cache=s.cache_reuse, decode=s.decode,
                        vocab_limit=loaded.tokenizer.vocab_size)
        if progress:
            graphs = engine.static is not None and engine.static.use_graphs
            progress("warming up (capturing CUDA graphs)" if graphs else "warming up", 90)
        engine.warm_up(loaded.tokenizer.bos_id)  # a prefill and a decode; on CUDA every decode graph captured
        self.loaded, self.engine = loaded, engine
        return loaded

    def apply_settings(self, settings: Settings) -> None:
        """New settings for the next request (the caller reloads the model when needed)."""
        self.settings = settings
        if self.engine is not None:
            self.engine.reuse_cache = settings.cache_reuse

    # -- per request -----------------------------------------------------------------------------
    def prepare(self, doc: Document, offset: int, now: float | None = None,
                open_docs: Iterable[Document] = ()) -> Prepared:
        """Context and prompt for a completion at ``offset`` (event loop; reads the live documents)."""
        if self.loaded is None:
            raise NotReadyError(self.load_error or "the model is still loading")
        tok = self.loaded.tokenizer
        s = self.settings
        t0 = time.perf_counter()
        snippets, header, header_tokens = self._cross_file(doc, offset, open_docs)
        t1 = time.perf_counter()
        budget = ContextBudget(s.prefix_tokens - header_tokens, s.suffix_tokens)
        ctx = build_context(doc, offset, budget, tok.count)
        t2 = time.perf_counter()
        try:
            prompt = build_prompt(tok, header + ctx.prefix, ctx.suffix, s.fim_mode)
        except TokenizerError as exc:
            raise NotReadyError(str(exc)) from exc
        t3 = time.perf_counter()
        deadline = (now if now is not None else time.monotonic()) + s.time_budget_ms / 1000
        return Prepared(doc.uri, ctx, prompt, s.max_new_tokens, deadline, (t2 - t1) * 1e3, (t3 - t2) * 1e3,
                        (t1 - t0) * 1e3, tuple(snippets))

    def _cross_file(self, doc: Document, offset: int, open_docs: Iterable[Document]) -> tuple[list[Snippet], str, int]:
        """(snippets, header text, its tokens): other files' definitions, or nothing when off or none found.

        Their budget comes out of the prefix budget (at most half of it), so the prompt keeps its size; with
        nothing found the prompt is exactly the one without cross-file context.
        """
        s = self.settings
        if not s.cross_file_context or self.loaded is None:
            return [], "", 0
        count = self.loaded.tokenizer.count
        budget = min(s.cross_file_tokens, s.prefix_tokens // 2)
        path = crossfile.uri_to_path(doc.uri)
        current = crossfile.marker(self.crossfile.display(path, path.name if path else doc.uri))
        found = self.crossfile.snippets(doc, offset, open_docs)
        chosen = crossfile.select(found, budget, count, current, self.crossfile_style)
        header = crossfile.render(chosen, current, self.crossfile_style)
        return chosen, header, sum(count(line) for line in header.splitlines(keepends=True))

    def generate(self, prep: Prepared, cancel: threading.Event | None = None) -> Outcome:
        """Run the model and post-process (worker thread)."""
        if self.loaded is None or self.engine is None:
            raise NotReadyError(self.load_error or "the model is still loading")
        tok, engine = self.loaded.tokenizer, self.engine
        self.last_prompt = {"mode": prep.prompt.mode, "ids": prep.prompt.ids, "healed": prep.prompt.healed,
                            "text": render(tok, prep.prompt.ids),
                            "crossfile": [f"{s.path}:{s.line + 1}" for s in prep.snippets]}
        req = GenerationRequest(
            prompt_ids=prep.prompt.ids,
            max_new_tokens=prep.max_new_tokens,
            stop_ids=tok.stop_ids(),
            constrain=lambda ids: prep.prompt.allowed_ids(tok, ids),
            should_stop=self._stop_rule(prep),
            deadline=prep.deadline,
            cancel=cancel,
        )
        try:
            result = engine.generate(req)
        except EngineError:
            engine.reset()
            raise
        self.recent_stops.append((prep.uri, result.stop))
        t0 = time.perf_counter()
        raw = strip_healed(prep.prompt, tok.decode_middle(result.ids))
        ended = result.stop == "eos"
        text = finalize(raw, prep.ctx, ended) if raw is not None and result.stop != "cancelled" else None
        timings = {
            "crossfile_ms": prep.crossfile_ms, "context_ms": prep.context_ms, "prompt_ms": prep.prompt_ms,
            "prefill_ms": result.prefill_ms,
            "decode_ms": result.decode_ms, "postprocess_ms": (time.perf_counter() - t0) * 1e3,
        }
        return Outcome(text, raw or "", result, timings)

    def _stop_rule(self, prep: Prepared) -> Callable[[list[int]], bool]:
        """Post-processing's early stop, on the text decoded so far (healed prefix removed)."""
        assert self.loaded is not None
        tok = self.loaded.tokenizer

        def should_stop(ids: list[int]) -> bool:
            text = strip_healed(prep.prompt, tok.decode_middle(ids))
            return text is not None and stop_reason(text, prep.ctx)

        return should_stop
