"""What a backend is asked and what it answers: one greedy completion, engine-neutral.

Why a module of its own: the completion pipeline talks to every backend (the in-process engine, llama.cpp's
server, OpenAI-compatible servers) through these few types, and none of them needs torch to be imported.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from model_backend.errors import ServiceError

StopReason = Literal["eos", "rule", "max_tokens", "time", "cancelled", "context"]


class EngineError(ServiceError):
    """The request cannot run on this model (too long, unsupported architecture)."""


@dataclass
class GenerationRequest:
    """One greedy completion: the prompt and everything that may end it early."""

    prompt_ids: list[int]
    max_new_tokens: int
    stop_ids: set[int]
    constrain: Callable[[list[int]], list[int] | None] | None = None  # ids allowed next, given ids so far (healing)
    should_stop: Callable[[list[int]], bool] | None = None  # post-processing rules, on the ids so far
    deadline: float | None = None  # time.monotonic() after which decoding stops
    # An invoked request (the user asked): decoding gets at least this long after the prefill, so a prefill that
    # alone used up the budget still leaves a real answer instead of ``stop: time`` after one token.
    decode_budget_s: float | None = None
    cancel: threading.Event | None = None
    on_token: Callable[[list[int]], None] | None = None  # called with the ids so far after each token (streaming)
    exclude_first: frozenset[int] = frozenset()  # never the first token: asking for an alternative answer
    # The text the answer must start with (token healing), for engines that constrain by grammar or regex (remote
    # backends) rather than through ``constrain``; the local engine uses ``constrain`` and ignores this.
    text_prefix: str = ""
    # Which document the prompt is for: an engine that keeps one prompt cache per slot can route by it.
    document: str = ""

    def stop_after(self, out: list[int]) -> StopReason | None:
        """Why decoding ends after the ids ``out``, by the request's own rules (checked after every token, in this
        order, by every backend), or None to go on."""
        if self.should_stop is not None and self.should_stop(out):
            return "rule"
        if len(out) >= self.max_new_tokens:
            return "max_tokens"
        if self.cancel is not None and self.cancel.is_set():
            return "cancelled"
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return "time"
        return None


@dataclass
class GenerationResult:
    """Generated ids (stop token excluded) and what the cache saved."""

    ids: list[int]
    stop: StopReason
    prompt_tokens: int
    reused_tokens: int
    prefilled_tokens: int
    prefill_ms: float
    decode_ms: float
    timings: dict[str, float] = field(default_factory=dict)
    # log-probability of each id in ``ids`` under the model (its full distribution, before healing constraints
    # or exclusions): ranks alternative answers.  Empty when a backend does not report them.
    token_logprobs: list[float] = field(default_factory=list)
    # False when a remote engine did not report what it computed (an OpenAI-compatible stream closed before its
    # usage figures came): ``reused_tokens``/``prefilled_tokens`` are then guesses and are not added to the stats.
    counts_known: bool = True

    @property
    def logprob(self) -> float:
        """The answer's log-probability under the model: the sum over its tokens (0.0 when not reported)."""
        return sum(self.token_logprobs)


class Backend(Protocol):
    """Runs one ``GenerationRequest`` at a time (the model worker calls it; it is never called concurrently)."""

    def generate(self, req: GenerationRequest) -> GenerationResult:
        """Decode greedily from ``req.prompt_ids`` until one of its stop conditions; raise ``EngineError``."""
        ...

    def reset(self) -> None:
        """Forget any cached prompt state (after an error mid-request)."""
        ...
