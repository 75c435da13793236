"""The decode loop: greedy decoding with a KV cache that survives from keystroke to keystroke.

Why our own loop and not ``generate()``: a completion server sends almost the same prompt on every
keystroke.  We remember the token ids whose keys/values sit in the cache, reuse the longest common
prefix with the next prompt, run only the new tail as one batched prefill, then decode greedily, checking
the caller's stop rules, a time budget and a cancel flag after every token.  The model itself is
``llama.LlamaRunner``; this module only decides which tokens to run and when to stop.

With ``speculative`` on, each forward pass after a chosen token also verifies a draft of up to k tokens taken
from the code itself (``speculative.py``); so does the prefill pass when the prompt's new tail is a keystroke's few
tokens (the draft then usually continues the previous suggestion).  Every row's logits then go through exactly
the choice plain decoding makes (token healing, stop ids, stop rules, the budget and the cancel flag, token by
token), and the draft is kept only as far as it agrees: the output is plain greedy decoding's, in fewer passes.  A
rejected draft token's position holds junk keys/values, so ``cached_ids`` never lists it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import numpy
import torch

from model_backend.compiled_step import CompiledStep
from model_backend.generation import EngineError, GenerationRequest, GenerationResult, StopReason
from model_backend.llama import LlamaRunner
from model_backend.native_step import NativeStep
from model_backend.speculative import DRAFT_TOKENS, PREVIOUS_DRAFT_TOKENS, Drafter
from model_backend.static_decode import StaticDecoder, resolve_mode


def common_prefix_len(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix of two id lists."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


# rows of a verify pass and the draft they check: row i holds the logits after the draft's first i tokens
Verified = tuple[torch.Tensor, list[int]]
PREFILL_DRAFT_TAIL = 4  # a prompt tail up to this long (a keystroke's new tokens) carries a draft in its pass
log = logging.getLogger(__name__)


class Engine:
    """Greedy decoding with prefix reuse.  Not thread-safe: one model worker owns it."""

    def __init__(self, model: Any, max_context: int, reuse_cache: bool = True, decode: str = "eager",
                 vocab_limit: int | None = None, speculative: bool = False,
                 draft_tokens: int | None = None) -> None:
        # "static": fixed-shape decode step (static_decode.py), replayed from CUDA graphs on CUDA; auto = on CUDA.
        # "native": the CPU's one-token step in hand-written C++ (native_step.py), auto on the CPU; "compiled": the
        # same step compiled by Inductor into fused loops (compiled_step.py), where the native one cannot run.  Both
        # over a half-precision KV cache (as llama.cpp keeps it), built by ``warm_up``.
        first = next(iter(model.parameters()), None)
        self.decode = resolve_mode(decode, first.device if first is not None else torch.device("cpu"))
        self.runner = LlamaRunner(model, max_context,
                                  kv_dtype=torch.float16 if self.decode in ("compiled", "native") else None)
        # Checkpoints often pad the embedding matrix past the tokenizer (to a multiple of 64, or Code Llama 7B's
        # 32016 with a smaller tokenizer): ids at or past the tokenizer's size have no text, so never pick them.
        vocab = int(model.config.vocab_size)
        self.vocab_limit: int | None = vocab_limit if vocab_limit is not None and vocab_limit < vocab else None
        self.reuse_cache = reuse_cache
        self.cached_ids: list[int] = []  # ids whose keys/values are valid in the cache, in order
        # the longest draft one pass verifies: the fixed verify step's k on the static path, longer when eager (a
        # draft that continues the previous suggestion; drafts from the prompt stay at DRAFT_TOKENS)
        if draft_tokens is None:
            draft_tokens = DRAFT_TOKENS if self.decode == "static" else PREVIOUS_DRAFT_TOKENS
        self.draft_tokens = draft_tokens
        self.speculative = speculative  # may be switched per request; the verify step's shape is set here
        self.static = (StaticDecoder(self.runner, verify_rows=draft_tokens + 1 if draft_tokens else 0)
                       if self.decode == "static" else None)
        self.compiled: CompiledStep | NativeStep | None = None  # the CPU's one-token step, once built
        if self.decode in ("compiled", "native"):
            self.compiled = self._cpu_step(native=self.decode == "native")
        self.forward: Callable[[list[int], int], torch.Tensor] = (
            self.static.forward if self.static is not None else self._forward)
        self.forward_all: Callable[[list[int], int], torch.Tensor] = (
            self.static.forward_all if self.static is not None else self._forward_all)
        self.drafter = self._drafter()

    def _cpu_step(self, native: bool) -> CompiledStep | NativeStep | None:
        """The native step where it can run, else the Inductor-compiled one, else None (the eager step)."""
        kinds: list[type[CompiledStep] | type[NativeStep]] = [NativeStep, CompiledStep] if native else [CompiledStep]
        for kind in kinds:
            try:
                return kind(self.runner)
            except ValueError as exc:  # another CPU, 4-bit weights...
                log.warning("%s decode step not available for this model (%s)", kind.__name__, exc)
        log.warning("decoding eagerly")
        return None

    def _drafter(self) -> Drafter:
        """The drafting policy of the step that decodes now.  With the compiled one-token step a verify pass (eager,
        several rows) costs about four steps, which only a keystroke typed along the previous suggestion repays (its
        prefill pass verifies the rest of that suggestion): drafts from the prompt, and drafts while decoding, then
        lose (benchmarks/README.md, "Speed").  Any other step (eager, static, native) drafts from both."""
        compiled_step = isinstance(self.compiled, CompiledStep) and self.compiled.ready
        return Drafter(prompt_cap=0) if compiled_step else Drafter()

    @property
    def drafts_pay(self) -> bool:
        """Whether speculation is used at all: not with the native CPU step.  Its verify pass is native too (rows
        bit-identical to its single steps, so the output would stay the same), and on 16-token answers drafting
        halved llama.cpp's per-token time; but it costs about 0.25 ms per draft row against 0.35 ms per step, and
        on the single-line suggestions the server shows by default drafts from the code were accepted only ~35 %:
        the LSP typing replay's model-call p95 rose from 30-35 to 53-55 ms (benchmarks/README.md, "Speed")."""
        return not (isinstance(self.compiled, NativeStep) and self.compiled.ready)

    @property
    def draft_while_decoding(self) -> bool:
        """Drafts between decoded tokens pay only where a verify pass is not dear next to a step: not with the
        compiled step (see ``_drafter``)."""
        return self.compiled is None or not self.compiled.ready

    @property
    def decode_step(self) -> str:
        """What decodes now: ``native``, ``compiled``, ``static``, or ``eager`` (asked for, not built yet, or
        building failed)."""
        if self.compiled is not None:
            if not self.compiled.ready:
                return "eager"
            return "native" if isinstance(self.compiled, NativeStep) else "compiled"
        return "eager" if self.decode in ("compiled", "native") else self.decode

    @property
    def max_context(self) -> int:
        return self.runner.max_len

    def generate(self, req: GenerationRequest) -> GenerationResult:
        """Prefill what the cache lacks, then decode greedily until a stop condition."""
        prompt = req.prompt_ids
        if not prompt:
            raise EngineError("empty prompt")
        if len(prompt) + 1 > self.max_context:
            raise EngineError(f"prompt of {len(prompt)} tokens does not fit the context of {self.max_context}")
        t0 = time.perf_counter()
        reused = common_prefix_len(self.cached_ids, prompt) if self.reuse_cache else 0
        reused = min(reused, len(prompt) - 1)  # at least one token must run to produce logits
        self.cached_ids = list(prompt[:reused])  # everything after `reused` gets overwritten
        speculate = self.speculative and self.draft_tokens > 0 and self.drafts_pay
        if speculate:
            self.drafter.begin(prompt, req.max_new_tokens)
        try:
            tail = prompt[reused:]
            # A draft rides along with a short prompt tail (the usual keystroke): the prefill pass then verifies it
            # too, so an answer that repeats the code (or the previous suggestion) needs no decode pass of its own.
            first = self._drafts(req, [], len(prompt), self._prefill_draft_room(len(tail))) if speculate else []
            if first:
                block = self.forward_all([*tail, *first], reused)  # [len(tail) + k, V]
                self.cached_ids = list(prompt)
                pending: Verified | None = (block[len(tail) - 1:], first)
                logits = block[len(tail) - 1]  # the rows' first, picked from by ``_decode``
            else:
                logits = self.forward(tail, reused)
                self.cached_ids = list(prompt)
                pending = None
            t1 = time.perf_counter()
            if req.deadline is not None and req.decode_budget_s is not None:  # the prefill never eats an invoked answer
                req = dataclasses.replace(req, deadline=max(req.deadline, time.monotonic() + req.decode_budget_s))
            # model passes that chose tokens (the prefill's included: plain decoding makes one per token), draft
            # tokens verified, draft tokens accepted (and of those, accepted by the prefill's own pass)
            counts = {"forwards": 1.0, "drafted": float(len(first)), "accepted": 0.0, "prefill_accepted": 0.0}
            ids, stop, logprobs = self._decode(req, logits, counts, speculate, pending)
        finally:
            if speculate:
                self.drafter.finish()
        t2 = time.perf_counter()
        return GenerationResult(
            ids=ids, stop=stop, prompt_tokens=len(prompt), reused_tokens=reused,
            prefilled_tokens=len(prompt) - reused, prefill_ms=(t1 - t0) * 1e3, decode_ms=(t2 - t1) * 1e3,
            token_logprobs=logprobs, timings=counts,
        )

    def _decode(self, req: GenerationRequest, logits: torch.Tensor, counts: dict[str, float],
                speculate: bool, pending: Verified | None = None) -> tuple[list[int], StopReason, list[float]]:
        """Pick tokens greedily; feed each back (cache grows by one per step) until something stops it.

        ``pending``: a draft the last pass verified along with the prompt, and that pass's rows from the prompt's
        last position on.  Also returns each picked token's log-probability (ranks alternative answers; one
        reduction per token).  ``counts`` gets the forward passes run, the draft tokens verified and those accepted.
        """
        out: list[int] = []
        logprobs: list[float] = []
        while True:
            if pending is not None:
                # Each row is exactly plain decoding's next choice: it saw the same ids before it.  Keep the draft as
                # far as the model agrees; the first disagreement's row is where the model's own token comes from.
                rows, drafts = pending
                pending = None
                logits = rows[0]
                kept = 0
                for i, draft in enumerate(drafts):
                    allowed = req.constrain(out) if req.constrain is not None else None
                    if self._pick(logits, allowed, req.exclude_first if not out else frozenset()) != draft:
                        break
                    kept += 1
                    counts["accepted"] += 1
                    if counts["forwards"] == 1:  # still the prefill's pass
                        counts["prefill_accepted"] += 1
                    if draft in req.stop_ids:
                        return out, "eos", logprobs
                    out.append(draft)
                    logprobs.append(self._logprob(logits, draft))
                    self.drafter.push(draft)
                    if req.on_token is not None:
                        req.on_token(out)
                    reason = self._stop_after(req, out)
                    self.cached_ids.append(draft)  # its keys/values were written by the verify pass
                    if reason is not None:
                        return out, reason, logprobs
                    logits = rows[i + 1]
                self.drafter.verified(kept)
            allowed = req.constrain(out) if req.constrain is not None else None
            token = self._pick(logits, allowed, req.exclude_first if not out else frozenset())
            if token in req.stop_ids:
                return out, "eos", logprobs
            out.append(token)
            logprobs.append(self._logprob(logits, token))
            if speculate:
                self.drafter.push(token)
            if req.on_token is not None:
                req.on_token(out)
            reason = self._stop_after(req, out)
            if reason is not None:
                return out, reason, logprobs
            counts["forwards"] += 1
            drafting = speculate and self.draft_while_decoding
            drafts = self._drafts(req, out, len(self.cached_ids) + 1) if drafting else []
            if not drafts:
                logits = self.forward([token], len(self.cached_ids))
                self.cached_ids.append(token)
                continue
            block = self.forward_all([token, *drafts], len(self.cached_ids))  # [1 + k, V]
            self.cached_ids.append(token)
            counts["drafted"] += len(drafts)
            pending = (block, drafts)

    def _forward(self, ids: list[int], start: int) -> torch.Tensor:
        """The last position's logits: a tail of up to the CPU step's ``tail_steps`` ids through that step once it
        is built (cheaper there than one eager pass over them), anything else through the eager forward."""
        step = self.compiled
        if step is None or len(ids) > step.tail_steps or not step.covers(start) \
                or not step.covers(start + len(ids) - 1):
            return self.runner.forward(ids, start)
        return step.run(ids, start)[-1]

    def _forward_all(self, ids: list[int], start: int) -> torch.Tensor:
        """Every row's logits (a verify pass): through the CPU step up to its ``verify_rows`` rows, else eagerly."""
        step = self.compiled
        if step is not None and len(ids) <= step.verify_rows and step.covers(start) \
                and step.covers(start + len(ids) - 1):
            return step.run(ids, start, rows=len(ids))
        return self.runner.forward_all(ids, start)

    def _prefill_draft_room(self, tail: int) -> int:
        """How long a draft may ride along with a prompt tail of ``tail`` new tokens: none after a long tail (a real
        prefill), and on the static path only as far as the fixed verify step holds (tail + draft rows), so that
        pass stays one replayed graph."""
        if tail > PREFILL_DRAFT_TAIL:
            return 0
        if self.static is not None:
            return max(0, self.static.verify_rows - tail)
        return self.draft_tokens

    def _drafts(self, req: GenerationRequest, out: list[int], written: int, most: int | None = None) -> list[int]:
        """Draft ids to verify after ``out``'s last token (at most ``most``), ``written`` ids being in the cache
        before the draft's first: none while token healing constrains the choice, none past the answer's length or
        the KV buffer."""
        if req.constrain is not None and req.constrain(out) is not None:
            return []
        room = min(self.draft_tokens if most is None else most, req.max_new_tokens - len(out),
                   self.max_context - 1 - written)
        return self.drafter.draft(room)

    def _stop_after(self, req: GenerationRequest, out: list[int]) -> StopReason | None:
        """The request's rules, then the end of the KV buffer."""
        reason = req.stop_after(out)
        if reason is None and len(self.cached_ids) + 1 >= self.max_context:
            return "context"
        return reason

    def _pick(self, logits: torch.Tensor, allowed: list[int] | None, exclude: frozenset[int] = frozenset()) -> int:
        """Greedy choice among the ids the tokenizer has, restricted to ``allowed`` while token healing
        constrains the answer, never one of ``exclude``."""
        if exclude:
            logits = logits.clone()
            logits[torch.tensor(sorted(exclude), dtype=torch.long, device=logits.device)] = -torch.inf
            if allowed:
                allowed = [i for i in allowed if i not in exclude] or allowed
        if allowed:
            index = torch.tensor(allowed, dtype=torch.long, device=logits.device)
            return int(index[int(torch.argmax(logits[index]))])
        row = logits if self.vocab_limit is None else logits[:self.vocab_limit]
        if row.device.type == "cpu" and row.dtype == torch.float32:
            return int(row.numpy().argmax())  # same first-maximum rule as torch.argmax
        return int(torch.argmax(row))

    def _logprob(self, logits: torch.Tensor, token: int) -> float:
        """log softmax(logits)[token] over the ids the tokenizer has: the model's own probability of the pick.

        A CPU row goes through numpy: torch's ``logsumexp`` on one 4k-entry row is several dispatched ops (27 us
        measured here, with the pick's ``argmax`` 6 us) against numpy's 8 us (and 1.4): about 24 us saved per token,
        2-3 % of a compiled decode step."""
        row = logits if self.vocab_limit is None else logits[:self.vocab_limit]
        if row.device.type == "cpu" and row.dtype == torch.float32:
            values = row.numpy()
            top = float(values.max())
            return float(values[token]) - top - math.log(float(numpy.exp(values - top).sum()))
        row = row.float()
        return float(row[token] - torch.logsumexp(row, dim=0))

    def reset(self) -> None:
        """Forget the cache (e.g. after an error mid-forward)."""
        self.cached_ids = []

    def warm_up(self, bos_id: int = 1) -> None:
        """One short prefill and decode (lazy initialisations), every CUDA graph captured, then a clean cache."""
        n = max(1, min(16, self.max_context - 3))
        self.generate(GenerationRequest(prompt_ids=[bos_id] * n, max_new_tokens=2, stop_ids=set()))
        if self.static is not None:
            self.static.capture_all(bos_id)
        # junk in the cache, forgotten just below; if building fails, the next step down (native -> compiled -> eager)
        step = self.compiled
        if step is not None and not step.ready and not step.failed and not step.compile() \
                and isinstance(step, NativeStep):
            self.compiled = self._cpu_step(native=False)
            if self.compiled is not None:
                self.compiled.compile()
        self.drafter = self._drafter()
        self.reset()
