"""A fixed-shape one-token decode step, so the decode loop can be captured once and replayed with CUDA graphs.

Why: on a GPU one decoded token of a 4-bit 7B model is ~1–3 ms of kernels but ~20 ms of Python launching
~700 of them (``benchmarks/results/gpu_smoke_h200.json``: 6 ms/token for 8 small layers).  A CUDA graph
replays the whole step's kernels with one launch.  A graph is a recording of kernels on fixed addresses,
so the step may not depend on anything the host decides per token:

- the token id and its position live in two preallocated device tensors (``token``, ``pos``), filled
  before each replay;
- rotary cos/sin are gathered with ``index_select(pos)``, the new key/value is written into the fixed KV
  buffer with ``index_copy_`` at ``pos``;
- attention reads a fixed-length window of the buffer (keys ``0..length-1``) with a mask built on the
  device from ``pos`` (keys after ``pos`` masked out), so no Python slicing depends on the position.

``length`` is a bucket: powers of two from 256 up to the buffer's ``max_len`` (and ``max_len`` itself),
one graph each, the smallest that holds ``pos``.  Attention then reads at most twice the keys it needs,
not the whole buffer (at 7B fp16 the KV cache is 512 KiB per token: 2 GiB per step for a 4,096 window).

Everything else is the eager engine's: the same cache tensors, written by position, so prefix reuse is
unchanged (keep the first N positions, overwrite the rest); prefill stays the variable-length eager forward.
On CPU the same step runs eagerly (no capture), which is how its correctness is tested without a GPU.

Capture is guarded: warm-up on a side stream, capture, then the replay is checked against the eager step at
a second token and position (a value baked in at capture time would show there); any exception or mismatch
logs a warning and the decoder goes on eagerly for good.  Replaying the step for the token and position of
the warm-up writes the same key/value again, so a capture in the middle of a request leaves the cache valid.
"""

from __future__ import annotations

import bisect
import logging
from typing import Any, Literal

import torch

from model_backend.llama import LlamaRunner

log = logging.getLogger(__name__)

DecodeMode = Literal["auto", "eager", "static"]
DECODE_MODES: tuple[str, ...] = ("auto", "eager", "static")
SMALLEST_BUCKET = 256
# A prompt tail this short (the usual keystroke: one or two new tokens) runs as replayed steps rather than an
# eager prefill; with graphs a step is a fraction of an eager forward's launch overhead.  Without graphs only
# a single token, where the step and the eager forward do the same work.
GRAPH_TAIL_STEPS = 4


def resolve_mode(decode: str, device: torch.device) -> Literal["eager", "static"]:
    """``auto`` = static (with CUDA graphs) on CUDA, eager elsewhere."""
    if decode not in DECODE_MODES:
        raise ValueError(f"decode must be one of {', '.join(DECODE_MODES)}, not {decode!r}")
    if decode == "auto":
        return "static" if device.type == "cuda" else "eager"
    return "static" if decode == "static" else "eager"


def attention_buckets(max_len: int, smallest: int = SMALLEST_BUCKET) -> list[int]:
    """Key-window lengths the step is built for: powers of two from ``smallest``, then ``max_len`` itself."""
    out: list[int] = []
    n = smallest
    while n < max_len:
        out.append(n)
        n *= 2
    out.append(max_len)
    return out


class StaticDecoder:
    """The one-token step over a ``LlamaRunner``'s weights and KV cache, eager or replayed from CUDA graphs.

    Not thread-safe (like the engine that owns it): one model worker calls it.
    """

    def __init__(self, runner: LlamaRunner, graphs: bool | None = None, buckets: list[int] | None = None,
                 tail_steps: int | None = None) -> None:
        self.runner = runner
        device = runner.device
        self.use_graphs = device.type == "cuda" if graphs is None else graphs
        if self.use_graphs and device.type != "cuda":
            raise ValueError("CUDA graphs need a CUDA device")
        self.buckets = sorted(b for b in (buckets or attention_buckets(runner.max_len)) if b <= runner.max_len)
        if not self.buckets or self.buckets[-1] != runner.max_len:
            self.buckets.append(runner.max_len)
        self.tail_steps = tail_steps or (GRAPH_TAIL_STEPS if self.use_graphs else 1)
        self.token = torch.zeros((1, 1), dtype=torch.long, device=device)  # the step's inputs, filled per token
        self.pos = torch.zeros((1,), dtype=torch.long, device=device)
        self.key_positions = torch.arange(runner.max_len, device=device)
        self.graphs: dict[int, Any] = {}  # bucket length -> torch.cuda.CUDAGraph
        self.outputs: dict[int, torch.Tensor] = {}  # bucket length -> the graph's logits buffer
        self.pool: Any = None  # one memory pool shared by all graphs (never replayed concurrently)
        self.fallback: str | None = None  # why graphs were given up, if they were

    # -- the engine's entry points -------------------------------------------------------------
    @torch.inference_mode()
    def forward(self, ids: list[int], start: int) -> torch.Tensor:
        """Same contract as ``LlamaRunner.forward``: run ``ids`` at positions start.., return the last logits."""
        if len(ids) > self.tail_steps:
            return self.runner.forward(ids, start)
        logits = None
        for i, token in enumerate(ids):
            logits = self.step(token, start + i)
        assert logits is not None, "forward needs at least one id"
        return logits

    @torch.inference_mode()
    def step(self, token: int, pos: int) -> torch.Tensor:
        """Write ``token``'s key/value at ``pos`` and return its logits ``[V]`` (a fresh tensor)."""
        if not 0 <= pos < self.runner.max_len:
            raise IndexError(f"position {pos} outside the KV buffer of {self.runner.max_len}")
        length = self.bucket(pos)
        self._set_inputs(token, pos)
        if not self.use_graphs:
            return self._step(length)
        graph = self.graphs.get(length)
        if graph is None:
            return self._capture(length, token, pos)
        graph.replay()
        return self.outputs[length].clone()

    @torch.inference_mode()
    def capture_all(self, token: int = 1) -> None:
        """Capture every bucket's graph now (at load, not on a keystroke).  Writes junk at positions 0-1:
        the caller forgets its cached ids afterwards."""
        if not self.use_graphs:
            return
        for length in self.buckets:
            if length not in self.graphs and self.use_graphs:
                self._set_inputs(token, 0)
                self._capture(length, token, 0)

    def bucket(self, pos: int) -> int:
        """The smallest key window that holds position ``pos``."""
        return self.buckets[bisect.bisect_right(self.buckets, pos)]

    # -- the step itself: fixed shapes, no host value of the position ------------------------------
    def _set_inputs(self, token: int, pos: int) -> None:
        self.token.fill_(token)
        self.pos.fill_(pos)

    def _step(self, length: int) -> torch.Tensor:
        r = self.runner
        x = r.embed(self.token).to(r.act_dtype)  # [1, 1, D]
        cos, sin = r.cos.index_select(0, self.pos), r.sin.index_select(0, self.pos)  # [1, hd]
        mask = (self.key_positions[:length] <= self.pos).unsqueeze(0)  # [1, length], True = may attend

        def write(i: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            keys, values = r.cache.k[i], r.cache.v[i]  # [1, KV, max_len, hd], never reallocated
            keys.index_copy_(2, self.pos, k)
            values.index_copy_(2, self.pos, v)
            return keys[:, :, :length], values[:, :, :length]

        for i, layer in enumerate(r.layers):
            x = r.block(i, layer, x, cos, sin, write, mask)
        return r.logits(x)

    # -- CUDA graphs -----------------------------------------------------------------------------
    def _capture(self, length: int, token: int, pos: int) -> torch.Tensor:
        """Capture ``length``'s graph with the inputs set to (token, pos); return that step's logits.

        Any failure (capture error, replay disagreeing with the eager step) switches to eager decoding.
        """
        try:
            eager = self._warm_up(length)  # the real step, eagerly: writes (token, pos)'s key/value
            graph = torch.cuda.CUDAGraph()
            if self.pool is None:
                self.pool = torch.cuda.graph_pool_handle()
            with torch.cuda.graph(graph, pool=self.pool, capture_error_mode="thread_local"):
                static_out = self._step(length)
            self._check(graph, static_out, length, token, pos)
            self._set_inputs(token, pos)
            graph.replay()  # the real step again: same key/value written, logits into the graph's buffer
            torch.cuda.synchronize()
            if not _close(static_out, eager):
                raise RuntimeError("the replayed step differs from the eager step at the same token and position")
        except Exception as exc:  # any capture problem: decode eagerly, never fail the request
            self._give_up(f"{type(exc).__name__}: {exc}")
            self._set_inputs(token, pos)
            return self._step(length)
        self.graphs[length] = graph
        self.outputs[length] = static_out
        log.debug("captured the decode step for a %d-key window", length)
        return static_out.clone()

    def _warm_up(self, length: int) -> torch.Tensor:
        """Run the step a few times on a side stream (lazy initialisations must not happen during capture)."""
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                out = self._step(length)
        torch.cuda.current_stream().wait_stream(stream)
        torch.cuda.synchronize()
        return out.clone()

    def _check(self, graph: Any, static_out: torch.Tensor, length: int, token: int, pos: int) -> None:
        """Replay at another token (and the next position, if the window has it) against the eager step.

        The probe's key/value lands at ``pos`` or ``pos + 1``: ``pos`` is rewritten by the real replay that
        follows, and ``pos + 1`` is past the cached ids, so it is overwritten before it is ever read.
        """
        probe_token = (token + 1) % int(self.runner.model.config.vocab_size)
        probe_pos = pos + 1 if pos + 1 < length else pos
        self._set_inputs(probe_token, probe_pos)
        expected = self._step(length).clone()
        graph.replay()
        torch.cuda.synchronize()
        if not _close(static_out, expected):
            diff = float((static_out - expected).abs().max())
            raise RuntimeError(f"the replayed step differs from the eager step (max |diff| {diff:.3g}) "
                               f"at token {probe_token}, position {probe_pos}")

    def _give_up(self, why: str) -> None:
        log.warning("CUDA graph capture of the decode step failed, decoding without graphs: %s", why)
        self.fallback = why
        self.use_graphs = False
        self.tail_steps = 1
        self.graphs.clear()
        self.outputs.clear()
        self.pool = None
        try:
            torch.cuda.synchronize()
        except Exception:  # a broken capture may leave an error here; the eager step will show it if it persists
            log.debug("synchronize after a failed capture raised", exc_info=True)


def _close(got: torch.Tensor, expected: torch.Tensor) -> bool:
    """Same greedy choice and the same logits up to half-precision noise."""
    if not bool(torch.isfinite(got).all()):
        return False
    tol = 1e-2 * (float(expected.abs().max()) + 1.0)
    # the eager step's choice must still be a top choice of the replay (a near-tie may flip, nothing more)
    return float((got - expected).abs().max()) <= tol and float(got[int(expected.argmax())]) >= float(got.max()) - tol
