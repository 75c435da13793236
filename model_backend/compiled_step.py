"""The CPU decode step as a few fused loops: the model's short blocks compiled by TorchInductor.

Why: on a CPU the eager step of a small model is mostly dispatch, not arithmetic.  One token through the embedded
model is ~1,400 aten calls (casts, views, the norms' internals), and the products and attention run as separate
library calls that each stream their operands from memory; llama.cpp does the same step in about half the time
(``benchmarks/README.md``, "Speed").  Written as plain reductions (a product is ``(x * W).sum(-1)``, attention is
``(q * K).sum(-1)``, softmax, ``(p * V).sum``), the whole block is one graph that Inductor turns into a handful of
vectorised C++ loops: each weight matrix and each layer's keys/values are read once, in the dtype they are stored in
(half-precision weights and a half-precision KV cache are widened in registers); norms, rotary and SiLU run as
small loops whose results are stored once (``_stored``) for the big loops that read them, and the residual adds fuse
into the products.

What it computes is the eager forward's arithmetic (``llama.LlamaRunner.block``): activations in float32, each
product's input rounded to the weights' dtype first, float32 accumulation; only the summation order differs.  The
KV cache is half precision here (as llama.cpp's default), so the eager forward, which still runs long prefills,
widens what it reads (``KVCache.update``).

``decode_block`` takes any number of rows, but only the one-row step (a decoded token) runs compiled.  Compiled for
several rows (a speculative verify pass) it was no help: 9.2 ms for 5 rows with the row count symbolic against 5.0
eager, 3.9-4.2 ms with 5 rows fixed (about four one-row steps: Inductor's loops do not share a weight's reads between
rows), so verify passes stay eager.  The position (the number of cached keys) is symbolic and every other size
fixed, so the graph does not recompile as the cache grows.

Compiling happens while the model loads (``Engine.warm_up``), not beside the first requests: tracing holds Python's
GIL for seconds, and every eager op run meanwhile waits for it (measured: keystrokes of 3-9 s during a background
compile).  It takes ~45 s on two cores the first time and ~6 s after that (Inductor keeps its result in its on-disk
cache).  Any failure (no C++ compiler, an op Inductor cannot lower) logs one warning and leaves the eager step.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
import torch.nn.functional as F

from model_backend.llama import LlamaRunner

log = logging.getLogger(__name__)

def _product(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``x [R, in]`` (float32) times ``w [out, in]``ᵀ → ``[R, out]`` float32: the input rounded to the weights' dtype
    (what the eager ``Proj`` does), accumulated in float32, written as a reduction so it fuses."""
    return (x.to(w.dtype).to(torch.float32).unsqueeze(1) * w.to(torch.float32).unsqueeze(0)).sum(-1)


def _norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def _stored(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself, written to memory once: Inductor otherwise recomputes a cheap producer (a norm, rotary, the
    SiLU gate) inside every iteration of the loop that consumes it, and a product's loop runs once per output row
    (a norm's loads and multiplies for each of 1,216 rows).  ``as_strided`` is the op its lowering always
    materialises.  Measured, one process, 1,573 cached tokens: 0.97 -> 0.85 ms per fp16 step, 1.54 -> 0.95 ms per
    fp32 step (``benchmarks/README.md``, "Speed")."""
    return torch.as_strided(t, t.shape, t.stride())


def decode_block(tokens: torch.Tensor, start: int, embed: torch.Tensor, weights: list[torch.Tensor],
                 eps: list[float], keys: list[torch.Tensor], values: list[torch.Tensor], cos: torch.Tensor,
                 sin: torch.Tensor, final_norm: torch.Tensor, lm_head: torch.Tensor,
                 shape: tuple[int, int, int, int]) -> torch.Tensor:
    """Run ``tokens [R]`` at positions start..start+R-1 through every layer, writing their keys/values into ``keys``/
    ``values`` (``[1, KV, max_len, hd]`` per layer); return their logits ``[R, V]`` (float32).

    ``weights``: per layer attention norm, fused q/k/v, output, MLP norm, fused gate/up, down (six tensors);
    ``eps``: the norms' epsilons, per layer the pair, then the final norm's; ``shape``: heads, KV heads, head
    dimension, MLP width.
    """
    heads, kv, hd, ffn = shape
    rows = tokens.shape[0]
    end = start + rows
    group = heads // kv
    x = embed[tokens].to(torch.float32)  # [R, D]
    c, s = cos[start:end].unsqueeze(1), sin[start:end].unsqueeze(1)  # [R, 1, hd]
    # row r (position start + r) sees keys 0..start + r
    row_positions = start + torch.arange(rows, device=tokens.device)
    visible = torch.arange(end, device=tokens.device).unsqueeze(0) <= row_positions.unsqueeze(1)
    half = hd // 2
    for i in range(len(keys)):
        attn_norm, qkv_w, o_w, mlp_norm, gate_up_w, down_w = weights[6 * i:6 * i + 6]
        qkv = _product(_stored(_norm(x, attn_norm, eps[2 * i])), qkv_w).view(rows, heads + 2 * kv, hd)
        qk, v = qkv[:, :heads + kv], qkv[:, heads + kv:]  # [R, H+KV, hd], [R, KV, hd]
        qk = qk * c + torch.cat((-qk[..., half:], qk[..., :half]), dim=-1) * s
        qk = _stored(qk)  # each query is read once per cached key
        q, k = qk[:, :heads], qk[:, heads:]
        keys[i][0, :, start:end] = k.transpose(0, 1).to(keys[i].dtype)
        values[i][0, :, start:end] = v.transpose(0, 1).to(values[i].dtype)
        cached_k = keys[i][0, :, :end].to(torch.float32)  # [KV, T, hd]
        cached_v = values[i][0, :, :end].to(torch.float32)
        qg = q.reshape(rows, kv, group, hd).permute(1, 2, 0, 3)  # [KV, G, R, hd]
        scores = (qg.unsqueeze(3) * cached_k.unsqueeze(1).unsqueeze(1)).sum(-1) * (hd ** -0.5)  # [KV, G, R, T]
        probs = torch.softmax(scores.masked_fill(~visible, float("-inf")), dim=-1)
        out = (probs.unsqueeze(-1) * cached_v.unsqueeze(1).unsqueeze(1)).sum(-2)  # [KV, G, R, hd]
        x = x + _product(_stored(out.permute(2, 0, 1, 3).reshape(rows, heads * hd)), o_w)
        gate_up = _product(_stored(_norm(x, mlp_norm, eps[2 * i + 1])), gate_up_w)
        x = x + _product(_stored(F.silu(gate_up[:, :ffn]) * gate_up[:, ffn:]), down_w)
    return _product(_stored(_norm(x, final_norm, eps[-1])), lm_head)


# The symbolic graph covers positions from 1 to the buffer's second-to-last (Dynamo specialises 0, and a slice that
# ends at the buffer's end: a step there would compile another graph, seconds on a keystroke); ``covers`` says which,
# and the engine runs the others eagerly.
MIN_START = 1


def _plain(weight: torch.Tensor | None) -> torch.Tensor:
    """A projection's plain weight; 4-bit layers have none (``llama.Proj``), and the step cannot read theirs."""
    if weight is None:
        raise ValueError("the compiled step needs plain (not quantised) projection weights")
    return weight


class CompiledStep:
    """``decode_block`` compiled over one ``LlamaRunner``'s weights and (half-precision) KV cache.

    Not thread-safe: one model worker compiles it (at load) and calls it, once ``ready``.
    """

    def __init__(self, runner: LlamaRunner) -> None:
        if runner.device.type != "cpu":
            raise ValueError("the compiled step is for the CPU (CUDA uses graphs: static_decode.py)")
        self.runner = runner
        self.weights: list[torch.Tensor] = []
        self.eps: list[float] = []
        for layer in runner.layers:
            self.weights += [layer.attn_norm[0], _plain(layer.qkv.weight), _plain(layer.o_proj.weight),
                             layer.mlp_norm[0], _plain(layer.gate_up.weight), _plain(layer.down_proj.weight)]
            self.eps += [layer.attn_norm[1], layer.mlp_norm[1]]
        self.eps.append(runner.final_norm[1])
        self.embed: torch.Tensor = runner.model.model.embed_tokens.weight.detach()
        self.lm_head = _plain(runner.lm_head.weight)
        self.shape = (runner.n_heads, runner.n_kv, runner.head_dim, runner.layers[0].ffn)
        # Every shape fixed but the position: the first warm-up call compiles for one position, the second (another
        # position) recompiles with the position symbolic (Dynamo's automatic dynamic shapes).  Compiled with every
        # size symbolic (``dynamic=True``) the step was 1.4 ms instead of 1.0: Inductor cannot specialise its loops.
        self.fn: Any = torch.compile(decode_block)
        self.ready = False
        self.failed: str | None = None  # why the eager step stays, if compiling failed
        self.tail_steps = 3  # a prompt tail up to this long (a keystroke's new tokens) runs as steps, not eagerly
        self.verify_rows = 1  # verify passes of more rows run eagerly (see the module's docstring)

    def compile(self) -> bool:
        """Compile the one-token step (at load); True if it is ``ready``.  It runs on the real cache (no second
        buffer of its size) and writes junk at two early positions: the caller forgets its cached ids afterwards."""
        t0 = time.perf_counter()
        try:
            cache = self.runner.cache
            with torch.inference_mode():
                for start in (MIN_START + 1, MIN_START + 3):  # the second call makes the position symbolic
                    self._call(torch.ones(1, dtype=torch.long), start, cache.k, cache.v)
        except Exception as exc:  # no compiler, an op Inductor cannot lower...: the eager step stays
            self.failed = f"{type(exc).__name__}: {exc}"
            log.warning("compiling the CPU decode step failed, decoding eagerly: %s", self.failed)
            return False
        log.info("compiled the CPU decode step in %.1f s", time.perf_counter() - t0)
        self.ready = True
        return True

    def _call(self, tokens: torch.Tensor, start: int, keys: list[torch.Tensor],
              values: list[torch.Tensor]) -> torch.Tensor:
        r = self.runner
        out: torch.Tensor = self.fn(tokens, start, self.embed, self.weights, self.eps, keys, values, r.cos, r.sin,
                                    r.final_norm[0], self.lm_head, self.shape)
        return out

    def covers(self, pos: int) -> bool:
        """Whether a step at ``pos`` runs the compiled graph as it is (no recompile)."""
        return self.ready and MIN_START <= pos < self.runner.max_len - 1

    def run(self, ids: list[int], start: int, rows: int = 1) -> torch.Tensor:
        """``ids`` at positions start.. as one step each; the logits of the last ``rows`` of them ``[rows, V]``."""
        out = [self.step(token, start + i) for i, token in enumerate(ids)]
        return torch.stack(out[len(ids) - rows:])

    @torch.inference_mode()
    def step(self, token: int, pos: int) -> torch.Tensor:
        """``token``'s logits ``[V]`` at ``pos`` (where ``covers``), its keys/values written into the cache."""
        cache = self.runner.cache
        return self._call(torch.tensor([token], dtype=torch.long), pos, cache.k, cache.v)[0]
