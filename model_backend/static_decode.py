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

Speculative decoding (``speculative.py``) verifies a draft in a second fixed-shape step of ``verify_rows``
tokens (the token just chosen and up to ``verify_rows - 1`` draft tokens) at positions ``pos..pos+rows-1``: a
shorter draft is padded, the padding's keys/values land past the cached ids (never read before they are
overwritten), and each row's mask stops at its own position, so padding changes no valid row.  It gets its
own graph per window, captured and checked like the one-token step.

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

DecodeMode = Literal["auto", "eager", "static", "compiled"]
DECODE_MODES: tuple[str, ...] = ("auto", "eager", "static", "compiled", "native")
SMALLEST_BUCKET = 256
# A prompt tail this short (the usual keystroke: one or two new tokens) runs as replayed steps rather than an
# eager prefill; with graphs a step is a fraction of an eager forward's launch overhead.  Without graphs only
# a single token, where the step and the eager forward do the same work.
GRAPH_TAIL_STEPS = 4


def resolve_mode(decode: str, device: torch.device) -> Literal["eager", "static", "compiled", "native"]:
    """``auto`` = static (with CUDA graphs) on CUDA, native (``native_step.py``; the engine falls back to compiled,
    then eager, where it cannot run) on the CPU; ``compiled`` or ``native`` asked for on another device = eager."""
    if decode not in DECODE_MODES:
        raise ValueError(f"decode must be one of {', '.join(DECODE_MODES)}, not {decode!r}")
    if decode == "auto":
        return "static" if device.type == "cuda" else "native"
    if decode in ("compiled", "native"):
        return ("compiled" if decode == "compiled" else "native") if device.type == "cpu" else "eager"
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
                 tail_steps: int | None = None, verify_rows: int = 0) -> None:
        self.runner = runner
        device = runner.device
        self.use_graphs = device.type == "cuda" if graphs is None else graphs
        if self.use_graphs and device.type != "cuda":
            raise ValueError("CUDA graphs need a CUDA device")
        self.buckets = sorted(b for b in (buckets or attention_buckets(runner.max_len)) if b <= runner.max_len)
        if not self.buckets or self.buckets[-1] != runner.max_len:
            self.buckets.append(runner.max_len)
        self.tail_steps = tail_steps or (GRAPH_TAIL_STEPS if self.use_graphs else 1)
        self.verify_rows = verify_rows  # rows of the speculative verify step (0 = none)
        # the steps' inputs, filled per call: token ids [1, rows] and positions [rows], one pair per row count
        self.inputs: dict[int, tuple[torch.Tensor, torch.Tensor]] = {
            rows: (torch.zeros((1, rows), dtype=torch.long, device=device),
                   torch.zeros((rows,), dtype=torch.long, device=device))
            for rows in sorted({1, verify_rows} - {0})}
        self.token, self.pos = self.inputs[1]
        self.key_positions = torch.arange(runner.max_len, device=device)
        self.graphs: dict[tuple[int, int], Any] = {}  # (bucket length, rows) -> torch.cuda.CUDAGraph
        self.outputs: dict[tuple[int, int], torch.Tensor] = {}  # (bucket length, rows) -> the graph's logits
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
    def forward_all(self, ids: list[int], start: int) -> torch.Tensor:
        """Same contract as ``LlamaRunner.forward_all`` (every row's logits ``[S, V]``): a verify block of up to
        ``verify_rows`` ids runs as the fixed-shape verify step, anything else as the eager forward."""
        rows = self.verify_rows
        if len(ids) == 1:
            return self.step(ids[0], start).unsqueeze(0)
        if not rows or len(ids) > rows or start + rows > self.runner.max_len:
            return self.runner.forward_all(ids, start)
        return self._run([*ids, *[ids[-1]] * (rows - len(ids))], start)[:len(ids)]

    @torch.inference_mode()
    def step(self, token: int, pos: int) -> torch.Tensor:
        """Write ``token``'s key/value at ``pos`` and return its logits ``[V]`` (a fresh tensor)."""
        return self._run([token], pos)

    def _run(self, tokens: list[int], pos: int) -> torch.Tensor:
        """The fixed-shape step for ``len(tokens)`` rows at positions pos..: logits ``[V]`` (one row) or
        ``[rows, V]``, replayed from a graph when there is one (captured on first use)."""
        rows = len(tokens)
        if not 0 <= pos <= pos + rows - 1 < self.runner.max_len:
            raise IndexError(f"positions {pos}..{pos + rows - 1} outside the KV buffer of {self.runner.max_len}")
        length = self.bucket(pos + rows - 1)
        self._set_inputs(tokens, pos)
        if not self.use_graphs:
            return self._step(length, rows)
        graph = self.graphs.get((length, rows))
        if graph is None:
            return self._capture(length, tokens, pos)
        graph.replay()
        return self.outputs[(length, rows)].clone()

    @torch.inference_mode()
    def capture_all(self, token: int = 1) -> None:
        """Capture every bucket's graph now (at load, not on a keystroke).  Writes junk at positions 0-1:
        the caller forgets its cached ids afterwards."""
        if not self.use_graphs:
            return
        for rows in self.inputs:
            for length in self.buckets:
                if (length, rows) not in self.graphs and self.use_graphs and rows <= length:
                    self._set_inputs([token] * rows, 0)
                    self._capture(length, [token] * rows, 0)

    def bucket(self, pos: int) -> int:
        """The smallest key window that holds position ``pos``."""
        return self.buckets[bisect.bisect_right(self.buckets, pos)]

    # -- the step itself: fixed shapes, no host value of the position ------------------------------
    def _set_inputs(self, tokens: list[int], pos: int) -> None:
        token, positions = self.inputs[len(tokens)]
        if len(tokens) == 1:
            token.fill_(tokens[0])
            positions.fill_(pos)
            return
        token.copy_(torch.tensor([tokens], dtype=torch.long), non_blocking=True)
        positions.copy_(torch.arange(pos, pos + len(tokens)), non_blocking=True)

    def _step(self, length: int, rows: int = 1) -> torch.Tensor:
        r = self.runner
        token, pos = self.inputs[rows]
        x = r.embed(token).to(r.act_dtype)  # [1, rows, D]
        cos, sin = r.cos.index_select(0, pos), r.sin.index_select(0, pos)  # [rows, hd]
        mask = self.key_positions[:length].unsqueeze(0) <= pos.unsqueeze(1)  # [rows, length], True = may attend

        def write(i: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            keys, values = r.cache.k[i], r.cache.v[i]  # [1, KV, max_len, hd], never reallocated
            keys.index_copy_(2, pos, k)
            values.index_copy_(2, pos, v)
            return keys[:, :, :length], values[:, :, :length]

        for i, layer in enumerate(r.layers):
            x = r.block(i, layer, x, cos, sin, write, mask)
        return r.logits(x) if rows == 1 else r.logits(x, rows=rows)

    # -- CUDA graphs -----------------------------------------------------------------------------
    def _capture(self, length: int, tokens: list[int], pos: int) -> torch.Tensor:
        """Capture the graph of ``len(tokens)`` rows over ``length`` keys with the inputs set to (tokens, pos);
        return that step's logits.

        Any failure (capture error, replay disagreeing with the eager step) switches to eager decoding.
        """
        rows = len(tokens)
        try:
            eager = self._warm_up(length, rows)  # the real step, eagerly: writes (tokens, pos)'s keys/values
            graph = torch.cuda.CUDAGraph()
            if self.pool is None:
                self.pool = torch.cuda.graph_pool_handle()
            with torch.cuda.graph(graph, pool=self.pool, capture_error_mode="thread_local"):
                static_out = self._step(length, rows)
            self._check(graph, static_out, length, tokens, pos)
            self._set_inputs(tokens, pos)
            graph.replay()  # the real step again: same key/value written, logits into the graph's buffer
            torch.cuda.synchronize()
            if not _close(static_out, eager):
                raise RuntimeError("the replayed step differs from the eager step at the same token and position")
        except Exception as exc:  # any capture problem: decode eagerly, never fail the request
            self._give_up(f"{type(exc).__name__}: {exc}")
            self._set_inputs(tokens, pos)
            return self._step(length, rows)
        self.graphs[(length, rows)] = graph
        self.outputs[(length, rows)] = static_out
        log.debug("captured the %d-row decode step for a %d-key window", rows, length)
        return static_out.clone()

    def _warm_up(self, length: int, rows: int = 1) -> torch.Tensor:
        """Run the step a few times on a side stream (lazy initialisations must not happen during capture)."""
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                out = self._step(length, rows)
        torch.cuda.current_stream().wait_stream(stream)
        torch.cuda.synchronize()
        return out.clone()

    def _check(self, graph: Any, static_out: torch.Tensor, length: int, tokens: list[int], pos: int) -> None:
        """Replay at other tokens (and the next position, if the window has it) against the eager step.

        The probe's keys/values land at ``pos..`` or ``pos + 1..``: ``pos..`` is rewritten by the real replay
        that follows, and what lies past it is past the cached ids, so it is overwritten before it is read.
        """
        rows = len(tokens)
        probe = [(t + 1) % int(self.runner.model.config.vocab_size) for t in tokens]
        probe_pos = pos + 1 if pos + rows < length else pos
        self._set_inputs(probe, probe_pos)
        expected = self._step(length, rows).clone()
        graph.replay()
        torch.cuda.synchronize()
        if not _close(static_out, expected):
            diff = float((static_out - expected).abs().max())
            raise RuntimeError(f"the replayed step differs from the eager step (max |diff| {diff:.3g}) "
                               f"at tokens {probe}, position {probe_pos}")

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
    """Same greedy choice (per row) and the same logits up to half-precision noise."""
    if not bool(torch.isfinite(got).all()):
        return False
    tol = 1e-2 * (float(expected.abs().max()) + 1.0)
    # the eager step's choice must still be a top choice of the replay (a near-tie may flip, nothing more)
    chosen = got.gather(-1, expected.argmax(-1, keepdim=True))
    top = got.max(-1, keepdim=True).values
    return float((got - expected).abs().max()) <= tol and bool((chosen >= top - tol).all())
