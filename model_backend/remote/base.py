"""The part of a remote backend that does not depend on the wire format: the request's rules, applied as the
answer streams in.

A ``GenerationRequest`` carries callbacks (stop rules, cancel flag, deadline) that no engine can run, so they are
checked here after every streamed token, and when one fires the stream is closed: llama.cpp then stops decoding
for that slot (tests/engines check ``/slots``).  Two rules do have engine-side equivalents and are translated:

* token healing (``text_prefix``): a grammar that makes the answer start with the healed text (llama.cpp GBNF;
  vLLM's ``guided_regex``), so the engine picks, among the tokens that agree with it, the one the model likes best
  (the local engine's ``constrain`` does the same over the tokenizer's pieces);
* ``exclude_first``: an engine's ``logit_bias`` bans a token for the whole answer, not only as its first token.
  So an alternative answer is two requests: one token with the ban, then the rest without it (the engine's
  prompt cache makes the second one a one-token prefill).  Same semantics as the local engine.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from model_backend.generation import EngineError, GenerationRequest, GenerationResult, StopReason
from model_backend.remote.http import Connection, Interrupted, RemoteError
from model_backend.tokenization import CodeLlamaTokenizer

log = logging.getLogger(__name__)


def gbnf_prefix_grammar(text: str) -> str:
    """A GBNF grammar for "starts with ``text``, then anything"."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02X}")
        else:
            out.append(ch)
    return f'root ::= "{"".join(out)}" [^\\x00]*\n'


def regex_prefix(text: str) -> str:
    """The same rule as a regular expression (vLLM's guided decoding)."""
    import re

    return re.escape(text) + r"[\s\S]*"


@dataclass
class Streamed:
    """What one engine request produced (before the request's own rules are applied to the whole answer)."""

    ids: list[int] = field(default_factory=list)
    stop: StopReason | None = None  # None: the engine stopped by itself without saying why
    prompt_n: int | None = None  # prompt tokens the engine computed this time
    cached_n: int | None = None  # prompt tokens it took from its cache
    prompt_ms: float = 0.0
    text: str = ""


class RemoteBackend:
    """Shared driver for remote engines (``Backend`` protocol); subclasses speak one wire format."""

    kind = "remote"

    def __init__(self, conn: Connection, tok: CodeLlamaTokenizer) -> None:
        self.conn = conn
        self.tok = tok
        self.engine_model = ""  # the model the engine says it serves (its file or served name)
        self.max_context = 0  # tokens one request may use (prompt + answer); 0 = unknown
        self.checked = False

    # -- to implement ------------------------------------------------------------------------------------
    def _check(self) -> None:
        """Reach the engine and verify that it serves a model our prompts fit; raise ``RemoteError``."""
        raise NotImplementedError

    def _request(self, prompt: list[int], req: GenerationRequest, max_new: int, heal: str,
                 banned: frozenset[int], forced: list[int]) -> Streamed:
        """One engine request, streamed, applying ``req``'s rules per token to ``forced`` + the ids so far.

        ``banned`` non-empty: the one-token request of an alternative answer (only its first token is wanted).
        """
        raise NotImplementedError

    # -- Backend protocol --------------------------------------------------------------------------------
    def check(self) -> None:
        """Reach and verify the engine now (at load); transient faults start the backoff and are raised."""
        try:
            self._check()
        except RemoteError as exc:
            if exc.transient:
                self.conn.failed(exc)
            raise
        self.checked = True
        self.conn.succeeded()

    def generate(self, req: GenerationRequest) -> GenerationResult:
        """One greedy answer from the engine; faults raise ``RemoteError`` with one stable message per kind."""
        self.conn.guard()  # during a backoff: the same message at once, no network
        try:
            if not self.checked:
                self._check()
                self.checked = True
            result = self._generate(req)
        except RemoteError as exc:
            if exc.transient:
                self.conn.failed(exc)
                self.checked = False  # it may come back restarted with another model: check its vocabulary again
            raise
        self.conn.succeeded()
        return result

    def reset(self) -> None:
        """Nothing to forget here: the prompt cache lives in the engine, which keeps it consistent itself."""

    def close(self) -> None:
        self.conn.close()

    # -- the request's rules -----------------------------------------------------------------------------
    def _generate(self, req: GenerationRequest) -> GenerationResult:
        prompt = req.prompt_ids
        if not prompt:
            raise EngineError("empty prompt")
        if self.max_context and len(prompt) + 1 > self.max_context:
            raise EngineError(f"prompt of {len(prompt)} tokens does not fit the engine's context of "
                              f"{self.max_context} tokens per slot")
        t0 = time.perf_counter()
        first: Streamed | None = None
        forced: list[int] = []
        heal = req.text_prefix
        if req.exclude_first:
            first = self._request(prompt, req, 1, heal, req.exclude_first, [])
            if first.stop is not None or not first.ids:
                return self._result(req, first, first, t0)
            forced = first.ids[:1]
            done = self.tok.decode_middle(forced)
            heal = heal[len(done):] if heal.startswith(done) else ""
            reason = req.stop_after(forced)
            if reason is not None:
                first.stop = reason
                return self._result(req, first, first, t0)
        rest = self._request(prompt + forced, req, req.max_new_tokens - len(forced), heal, frozenset(), forced)
        rest.ids = forced + rest.ids  # the answer is the banned-first token and what followed it, as locally
        return self._result(req, first or rest, rest, t0)

    def _result(self, req: GenerationRequest, head: Streamed, tail: Streamed, t0: float) -> GenerationResult:
        n = len(req.prompt_ids)
        prefilled = head.prompt_n if head.prompt_n is not None else n
        reused = head.cached_n if head.cached_n is not None else max(0, n - prefilled)
        total_ms = (time.perf_counter() - t0) * 1e3
        return GenerationResult(
            ids=tail.ids, stop=tail.stop or "eos", prompt_tokens=n, reused_tokens=reused,
            prefilled_tokens=prefilled, prefill_ms=head.prompt_ms, decode_ms=max(0.0, total_ms - head.prompt_ms),
            timings={"engine_prompt_ms": head.prompt_ms, "request_ms": total_ms},
            counts_known=head.prompt_n is not None,
        )

    def _stream_ended(self, req: GenerationRequest, got: Streamed, ids: list[int]) -> Streamed:
        """The stream ended before the engine said it was done: our cancel closed it (an answer), or the engine
        went away (a fault)."""
        if req.cancel is not None and req.cancel.is_set():
            got.ids, got.stop = ids, "cancelled"
            return got
        raise Interrupted(f"the engine at {self.conn.endpoint} ended the stream mid-answer (engine stopped or "
                          "restarted?)")

    def _remaining_ms(self, req: GenerationRequest) -> int | None:
        if req.deadline is None:
            return None
        return max(1, int((req.deadline - time.monotonic()) * 1000))


def timings_of(event: dict[str, Any]) -> tuple[int | None, int | None, float]:
    """(prompt_n, cache_n, prompt_ms) from a llama.cpp ``timings`` object, where present."""
    t = event.get("timings")
    if not isinstance(t, dict) or "prompt_n" not in t:
        return None, None, 0.0
    cache = t.get("cache_n")
    return int(t["prompt_n"]), (int(cache) if cache is not None else None), float(t.get("prompt_ms") or 0.0)
