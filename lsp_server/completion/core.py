"""The completion pipeline as plain Python: context → prompt → engine → post-processing.

No LSP types here: the server's handlers and the ``complete`` CLI both call this core, so what the CLI
prints is exactly what an editor would get.  ``prepare`` is cheap and runs on the event loop (it reads the
live document); ``generate`` runs on the model worker and only touches immutable inputs.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

from lsp_server.completion import crossfile, faults, fit_check
from lsp_server.completion.context import CompletionContext, ContextBudget, build_context
from lsp_server.completion.crossfile import CrossFile, Snippet
from lsp_server.completion.documents import Document
from lsp_server.completion.fit_check import NO_CHECK, FitCheck
from lsp_server.completion.postprocess import finalize, stop_reason
from lsp_server.completion.prompts import Prompt, build_prompt, render, strip_healed
from lsp_server.settings import Settings
from model_backend.engine import Engine
from model_backend.errors import ServiceError
from model_backend.generation import Backend, EngineError, GenerationRequest, GenerationResult
from model_backend.loading import LoadedModel, LoadSpec, ModelLoadError, Progress, load, resolve_path
from model_backend.tokenization import CodeLlamaTokenizer, TokenizerError, load_tokenizer

log = logging.getLogger(__name__)


class NotReadyError(ServiceError):
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
    fit_ms: float = 0.0  # capturing the code around the cursor for the fit check (not part of the prompt)
    snippets: tuple[Snippet, ...] = ()  # other files' code placed before the local prefix
    fit: FitCheck = NO_CHECK  # the code around the cursor, to check a suggestion against
    restart_budget_s: float | None = None  # invoked requests: the budget counts again from the worker's start


@dataclass
class Outcome:
    """A finished completion: the suggestion (None = nothing to show) and how it was made."""

    text: str | None
    raw: str
    result: GenerationResult
    timings: dict[str, float] = field(default_factory=dict)
    tried: int = 1  # answers decoded: more than one when the first did not fit (see ``CompletionCore.generate``)
    others: tuple[str, ...] = ()  # further distinct suggestions that fit, most likely first (an editor cycles)
    other_logprobs: tuple[float, ...] = ()  # the model's log-probability of each of ``others``

    @property
    def texts(self) -> list[str]:
        """Every suggestion to offer, the shown one first."""
        return ([self.text] if self.text else []) + list(self.others)


class CompletionCore:
    """Owns the loaded model and its engine; one instance per server."""

    rank_by_logprob = True  # extra suggestions by the model's log-probability (False: as decoded; benchmarks compare)

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loaded: LoadedModel | None = None  # the local model (backend "local"); its facts go into stats
        self.engine: Engine | None = None
        self.tokenizer: CodeLlamaTokenizer | None = None  # builds every prompt, whichever backend generates
        self.backend: Backend | None = None  # the local Engine, or a remote engine (model_backend/remote)
        self.described = ""  # what answers, for the user: "embedded on cpu", "llama.cpp at http://..."
        self.load_error: str | None = None
        self.last_prompt: dict[str, object] = {}
        self.recent_stops: deque[tuple[str, str]] = deque(maxlen=16)  # (uri, why decoding ended), by the worker
        self.crossfile = CrossFile()  # workspace folders, parsed other files, recent edits (event loop only)
        self.faults = faults.from_env()  # a test hook (lsp_server/completion/faults.py); None unless asked for

    # -- model lifetime (worker thread) ----------------------------------------------------------
    def load(self, progress: Progress | None = None) -> str:
        """Load the configured model and warm the engine up, or reach and check the remote engine; returns what
        answers now, in words.  Raises ``ModelLoadError`` (or ``EngineError``) with the fix."""
        s = self.settings
        old = self.backend
        self.loaded, self.engine, self.tokenizer, self.backend, self.load_error = None, None, None, None, None
        if old is not None and hasattr(old, "close"):
            old.close()
        if s.backend != "local":
            return self._load_remote(progress)
        loaded = load(LoadSpec(s.model, s.quantization, s.device, s.dtype, s.threads), progress)
        engine = Engine(loaded.model, s.context_window, reuse_cache=s.cache_reuse, decode=s.decode,
                        vocab_limit=loaded.tokenizer.vocab_size, speculative=s.speculative)
        if progress:
            graphs = engine.static is not None and engine.static.use_graphs
            progress("warming up (capturing CUDA graphs)" if graphs else
                     "warming up (compiling the decode step)" if engine.compiled is not None else "warming up", 90)
        # a prefill and a decode; on CUDA every decode graph captured, on the CPU the decode step compiled
        engine.warm_up(loaded.tokenizer.bos_id)
        self.loaded, self.engine, self.tokenizer, self.backend = loaded, engine, loaded.tokenizer, engine
        self.described = f"{loaded.name} on {loaded.device.type} ({loaded.load_ms:.0f} ms)"
        return self.described

    def _load_remote(self, progress: Progress | None) -> str:
        """Tokenizer here, generation there: load ``tokenizer`` (default ``model``) and check the engine.

        An engine that cannot be reached yet does not fail the load: the first completions say so once and come
        back empty, and it is tried again with backoff until it answers (no restart needed).  A vocabulary that
        differs from ours does fail it: no prompt we build would mean the same to that model.
        """
        from model_backend import remote

        s = self.settings
        if not s.endpoint:
            raise ModelLoadError(f"backend {s.backend!r} needs the `endpoint` setting (the engine's base URL)")
        report = progress or (lambda message, percent: None)
        report("loading tokenizer", 10)
        name = s.tokenizer or s.model
        try:
            tok = load_tokenizer(resolve_path(name))
            tok.require_fim()
        except TokenizerError as exc:
            raise ModelLoadError(str(exc)) from exc
        label = name or "the embedded model's tokenizer"
        backend = remote.connect(s.backend, s.endpoint, tok, label, s.api_key_env, s.request_timeout_ms,
                                 s.engine_slots)
        report(f"reaching {s.backend} at {s.endpoint}", 40)
        try:
            backend.check()
        except remote.RemoteError as exc:
            if not exc.transient:
                backend.close()
                raise
            log.warning("engine not ready yet (retried with backoff): %s", exc)
        self.tokenizer, self.backend = tok, backend
        self.described = f"{s.backend} at {s.endpoint}" + (f" ({backend.engine_model})" if backend.engine_model else "")
        return self.described

    def apply_settings(self, settings: Settings) -> None:
        """New settings for the next request (the caller reloads the model when needed)."""
        self.settings = settings
        if self.engine is not None:
            self.engine.reuse_cache = settings.cache_reuse
            self.engine.speculative = settings.speculative  # same output either way: no reload

    # -- per request -----------------------------------------------------------------------------
    def prepare(self, doc: Document, offset: int, now: float | None = None,
                open_docs: Iterable[Document] = (), invoked: bool = False,
                crossfile_style: crossfile.Style = "code") -> Prepared:
        """Context and prompt for a completion at ``offset`` (event loop; reads the live documents).

        The time budget counts from ``now`` (default: this call).  An ``invoked`` request (the user asked
        for it) gets its whole budget again when the worker starts it, so waiting behind other work never
        leaves it with nothing.  ``crossfile_style`` lays out other files' definitions (the server always uses
        code; ``benchmarks.crossfile_eval`` measures the alternative).
        """
        if self.tokenizer is None:
            raise NotReadyError(self.load_error or "the model is still loading")
        tok = self.tokenizer
        s = self.settings
        t0 = time.perf_counter()
        snippets, header, header_tokens = self._cross_file(doc, offset, open_docs, crossfile_style)
        t1 = time.perf_counter()
        budget = ContextBudget(s.prefix_tokens - header_tokens, s.suffix_tokens)
        ctx = build_context(doc, offset, budget, tok.count)
        t2 = time.perf_counter()
        prompt = build_prompt(tok, header + ctx.prefix, ctx.suffix, s.fim_mode)
        t3 = time.perf_counter()
        checked = s.alternatives or (invoked and s.suggestions > 1)  # extra suggestions must fit too
        fit = fit_check.for_cursor(doc, offset) if checked else NO_CHECK
        t4 = time.perf_counter()
        deadline = (now if now is not None else time.monotonic()) + s.time_budget_ms / 1000
        return Prepared(doc.uri, ctx, prompt, s.max_new_tokens, deadline, (t2 - t1) * 1e3, (t3 - t2) * 1e3,
                        (t1 - t0) * 1e3, (t4 - t3) * 1e3, tuple(snippets), fit,
                        s.time_budget_ms / 1000 if invoked else None)

    def _cross_file(self, doc: Document, offset: int, open_docs: Iterable[Document],
                    style: crossfile.Style = "code") -> tuple[list[Snippet], str, int]:
        """(snippets, header text, its tokens): other files' definitions, or nothing when off or none found.

        Their budget comes out of the prefix budget (at most half of it), so the prompt keeps its size; with
        nothing found the prompt is exactly the one without cross-file context.
        """
        s = self.settings
        if not s.cross_file_context or self.tokenizer is None:
            return [], "", 0
        count = self.tokenizer.count
        budget = min(s.cross_file_tokens, s.prefix_tokens // 2)
        path = crossfile.uri_to_path(doc.uri)
        current = crossfile.marker(self.crossfile.display(path, path.name if path else doc.uri))
        found = self.crossfile.snippets(doc, offset, open_docs)
        chosen = crossfile.select(found, budget, count, current, style)
        header = crossfile.render(chosen, current, style)
        return chosen, header, sum(count(line) for line in header.splitlines(keepends=True))

    def generate(self, prep: Prepared, cancel: threading.Event | None = None, want: int = 1,
                 record: bool = True) -> Outcome:
        """Run the model and post-process (worker thread).

        When the answer does not fit the code around the cursor (``fit_check``: a syntax error at it once
        inserted), or a blank line got nothing, the next-best answers are tried: the same prompt (its cache
        is reused, so only the new answer is decoded) with the answer's first code token excluded, keeping
        its leading whitespace.  The first that fits is shown; if none does, the first answer is.

        ``want``: how many distinct suggestions the editor can cycle through.  Once the shown answer is settled
        (exactly as with ``want=1``), more next-best answers are decoded the same way until ``want`` distinct
        ones that fit are found, the time budget ends or nothing is left to branch to.  With ``want=1`` nothing
        extra is decoded; ``Outcome.others`` then holds what the search above decoded that also fits.
        """
        if self.tokenizer is None or self.backend is None:
            raise NotReadyError(self.load_error or "the model is still loading")
        if prep.restart_budget_s is not None:
            prep = dataclasses.replace(prep, deadline=max(prep.deadline, time.monotonic() + prep.restart_budget_s))
        tok = self.tokenizer
        if record:  # a prefetch is not what the user asked for: ``codellama/lastPrompt`` keeps the real request
            self.last_prompt = {"mode": prep.prompt.mode, "ids": prep.prompt.ids,
                                "healed": prep.prompt.healed or None, "text": render(tok, prep.prompt.ids),
                                "crossfile": [f"{s.path}:{s.line + 1}" for s in prep.snippets]}
        first = chosen = self._attempt(prep, [], [], frozenset(), cancel)
        answers, decode_ms = [first], first.result.decode_ms
        fits: dict[int, bool] = {}  # by id(answer): each answer parsed at most once, and only when needed
        looking = self._wants_another(prep, first)  # for one that fits, to show instead of the first
        if looking or want > 1:
            branch = self._branch_point(prep, first.result.ids)
            forced, forced_logprobs = first.result.ids[:branch], first.result.token_logprobs[:branch]
            excluded = self._choice_at(first.result, branch)
            extra_tries = 2 * want  # beyond the fit search: answers that repeat or do not fit cost tries too
            while excluded and not self._out_of_time(prep, cancel):
                looking = looking and len(answers) <= self.settings.alternatives
                if not looking and (len(self._others(prep, answers, fits, chosen)) + 1 >= want or extra_tries <= 0):
                    break
                try:
                    other = self._attempt(prep, forced, forced_logprobs, frozenset(excluded), cancel)
                except EngineError:  # e.g. no room left in the context: the answers so far stand
                    break
                answers.append(other)
                extra_tries -= not looking
                decode_ms += other.result.prefill_ms + other.result.decode_ms
                choice = self._choice_at(other.result, branch)
                if not choice or choice <= excluded:
                    break  # nothing left to branch to
                excluded |= choice
                if looking and self._fits(prep, other, fits):
                    chosen, looking = other, False
        if record:
            self.recent_stops.append((prep.uri, chosen.result.stop))
        result = dataclasses.replace(first.result, ids=chosen.result.ids, stop=chosen.result.stop, decode_ms=decode_ms,
                                     token_logprobs=chosen.result.token_logprobs)
        timings = {
            "crossfile_ms": prep.crossfile_ms, "context_ms": prep.context_ms, "prompt_ms": prep.prompt_ms,
            "fit_ms": prep.fit_ms, "prefill_ms": result.prefill_ms, "decode_ms": decode_ms,
            "postprocess_ms": chosen.timings["postprocess_ms"],
        }
        others = self._others(prep, answers, fits, chosen)[:max(0, want - 1) or None]
        return Outcome(chosen.text, chosen.raw, result, timings, len(answers), tuple(o.text or "" for o in others),
                       tuple(o.result.logprob for o in others))

    @staticmethod
    def _fits(prep: Prepared, answer: Outcome, memo: dict[int, bool]) -> bool:
        """A complete answer (not cut by the clock or a cancel) with text that does not break the code there."""
        if id(answer) not in memo:
            memo[id(answer)] = answer.text is not None and answer.result.stop not in ("time", "cancelled") \
                and not prep.fit.breaks(answer.text)
        return memo[id(answer)]

    def _others(self, prep: Prepared, answers: list[Outcome], fits: dict[int, bool], chosen: Outcome) -> list[Outcome]:
        """The answers besides ``chosen`` worth offering too: distinct non-blank texts that fit, ranked by the
        model's log-probability of the whole answer (all share the tokens before the branch point)."""
        seen = {chosen.text}
        out = []
        ranked = sorted(answers, key=lambda a: -a.result.logprob) if self.rank_by_logprob else answers
        for answer in ranked:
            if answer is not chosen and answer.text and answer.text.strip() and answer.text not in seen \
                    and self._fits(prep, answer, fits):
                seen.add(answer.text)
                out.append(answer)
        return out

    def _attempt(self, prep: Prepared, forced: list[int], forced_logprobs: list[float], exclude: frozenset[int],
                 cancel: threading.Event | None) -> Outcome:
        """One answer: the prompt plus ``forced`` ids, the next token not one of ``exclude``; post-processed."""
        assert self.tokenizer is not None and self.backend is not None
        tok, engine = self.tokenizer, self.backend
        done = tok.decode_middle(forced) if forced else ""
        heal = prep.prompt.healed[len(done):] if prep.prompt.healed.startswith(done) else ""
        req = GenerationRequest(
            prompt_ids=prep.prompt.ids + forced,
            max_new_tokens=max(1, prep.max_new_tokens - len(forced)),
            stop_ids=tok.stop_ids(),
            constrain=lambda ids: prep.prompt.allowed_ids(tok, forced + ids),
            should_stop=self._stop_rule(prep, forced),
            deadline=prep.deadline,
            decode_budget_s=prep.restart_budget_s,
            cancel=cancel,
            exclude_first=exclude,
            text_prefix=heal,
            document=prep.uri,
        )
        if self.faults is not None:
            engine = self.faults.around(engine)  # test hook, off unless CODELLAMA_FAULT_INJECT is set
        try:
            result = engine.generate(req)
        except EngineError:
            engine.reset()
            raise
        except torch.OutOfMemoryError as exc:  # CUDA ran out: one clear error, the cache rebuilt next time
            engine.reset()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise EngineError(f"out of memory on the model's device ({exc}); the next request tries again") \
                from None
        if forced:
            result = dataclasses.replace(result, ids=forced + result.ids,
                                         token_logprobs=forced_logprobs + result.token_logprobs)
        t0 = time.perf_counter()
        raw = strip_healed(prep.prompt, tok.decode_middle(result.ids))
        ended = result.stop == "eos"
        text = finalize(raw, prep.ctx, ended) if raw is not None and result.stop != "cancelled" else None
        return Outcome(text, raw or "", result, {"postprocess_ms": (time.perf_counter() - t0) * 1e3})

    def _wants_another(self, prep: Prepared, first: Outcome) -> bool:
        """Whether to look for a better answer: it would break the code there, or a blank line got nothing."""
        if not self.settings.alternatives or first.result.stop in ("cancelled", "time"):
            return False
        if first.text is None:
            return not prep.ctx.line_prefix.strip() and not prep.ctx.line_suffix.strip()
        return prep.fit.breaks(first.text)

    def _branch_point(self, prep: Prepared, ids: list[int]) -> int:
        """Index of the answer's first token with code in it (the leading whitespace, the indentation, is kept)."""
        assert self.tokenizer is not None
        tok = self.tokenizer
        for i in range(len(ids)):
            text = strip_healed(prep.prompt, tok.decode_middle(ids[:i + 1]))
            if text is None or text.strip():
                return i
        return len(ids)

    def _choice_at(self, result: GenerationResult, branch: int) -> set[int]:
        """What the answer chose at ``branch``: its token there, the stop tokens if it ended there, else nothing."""
        assert self.tokenizer is not None
        if len(result.ids) > branch:
            return {result.ids[branch]}
        return set(self.tokenizer.stop_ids()) if result.stop == "eos" else set()

    @staticmethod
    def _out_of_time(prep: Prepared, cancel: threading.Event | None) -> bool:
        return (cancel is not None and cancel.is_set()) or time.monotonic() >= prep.deadline

    def _stop_rule(self, prep: Prepared, forced: list[int]) -> Callable[[list[int]], bool]:
        """Post-processing's early stop, on the text decoded so far (``forced`` ids first, healed prefix removed)."""
        assert self.tokenizer is not None
        tok = self.tokenizer

        def should_stop(ids: list[int]) -> bool:
            text = strip_healed(prep.prompt, tok.decode_middle(forced + ids))
            return text is not None and stop_reason(text, prep.ctx)

        return should_stop
