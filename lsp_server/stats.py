"""Cumulative counters and latency percentiles for ``codellama/stats`` (what users ask: is the cache working?)."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

LATENCY_WINDOW = 1000  # percentiles over the most recent completions


def nearest_rank(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of non-empty ``values``: the value of rank ceil(q/100 * N), 1-based
    (p95 of 100 samples is the 95th smallest).  The benchmarks use it too, so their figures mean the same."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered) / 100) - 1))]


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of ``values``; None when empty."""
    return nearest_rank(values, q) if values else None


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
    # prompt tokens of remote requests whose engine did not say what it reused (an OpenAI-compatible stream closed
    # before its usage figures): counted in prompt_tokens, in neither reused_tokens nor prefilled_tokens
    uncounted_prompt_tokens: int = 0
    # speculative decoding (model_backend/speculative.py): model passes that chose tokens (prefill included: one per
    # token without speculation), draft tokens verified, draft tokens accepted
    decode_forwards: int = 0
    draft_tokens: int = 0
    draft_accepted: int = 0
    prefetched: int = 0  # next suggestions computed ahead (as if the shown one were accepted) and kept
    prefetch_hits: int = 0  # requests answered from one of them
    # what prefetch cost real requests: prefetches a keystroke cut short while they ran on the worker, and the time
    # those keystrokes then waited for the worker (the model pass in progress finishing)
    prefetch_cut: int = 0
    prefetch_wait_ms: float = 0.0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    last: dict[str, Any] = field(default_factory=dict)  # the last request's per-stage timings
    actions: int = 0  # codellama.explain / refactor / docstring commands run
    actions_applied: int = 0  # edits the client applied
    actions_cancelled: int = 0  # stopped by $/cancelRequest or by cancelling their progress
    last_action: dict[str, Any] = field(default_factory=dict)  # command, stop, tokens, cut, model, outcome

    def record_generation(self, prompt: int, reused: int, prefilled: int, generated: int, known: bool = True) -> None:
        self.prompt_tokens += prompt
        self.generated_tokens += generated
        if not known:  # the engine did not report them: no guess goes into the reuse figures
            self.uncounted_prompt_tokens += prompt
            return
        self.reused_tokens += reused
        self.prefilled_tokens += prefilled

    def record_speculation(self, timings: dict[str, float]) -> None:
        """A local engine's decode counts (absent for remote backends)."""
        self.decode_forwards += int(timings.get("forwards", 0))
        self.draft_tokens += int(timings.get("drafted", 0))
        self.draft_accepted += int(timings.get("accepted", 0))

    def to_json(self) -> dict[str, Any]:
        """The ``codellama/stats`` answer: counters plus latency p50/p95 over recent completions."""
        data = asdict(self)
        lat = list(data.pop("latencies_ms"))
        data["latency_ms_p50"] = percentile(lat, 50)
        data["latency_ms_p95"] = percentile(lat, 95)
        data["latency_samples"] = len(lat)
        # of the drafted tokens, the share the model agreed with; generated tokens per decode pass
        data["draft_acceptance"] = self.draft_accepted / self.draft_tokens if self.draft_tokens else None
        data["tokens_per_forward"] = self.generated_tokens / self.decode_forwards if self.decode_forwards else None
        return data
