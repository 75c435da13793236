"""The generation engine: a greedy decode loop with a KV cache that survives from keystroke to keystroke.

Why our own loop and not ``generate()``: a completion server sends almost the same prompt on every
keystroke.  We remember the token ids whose keys/values sit in the cache, reuse the longest common
prefix with the next prompt, run only the new tail as one batched prefill, then decode greedily, checking
the caller's stop rules, a time budget and a cancel flag after every token.

Why our own forward over the model's modules: Hugging Face's generic forward spends ~13 ms per token of
Python on mask building, cache bookkeeping and checks (measured in ``shared/docs/MEASURED.md``), which
dwarfs the arithmetic of a small model.  ``LlamaRunner`` calls the checkpoint's own modules (embeddings,
norms, projections, MLP: so 4-bit bitsandbytes layers work unchanged) and does only attention and the
cache itself, gpt-fast style: one fixed buffer per layer, written by position.  Reuse = keep the first N
positions and overwrite the rest, which is also what a static (CUDA-graph friendly) cache needs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

StopReason = Literal["eos", "rule", "max_tokens", "time", "cancelled", "context"]


class EngineError(Exception):
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
    cancel: threading.Event | None = None
    on_token: Callable[[list[int]], None] | None = None  # called with the ids so far after each token (streaming)
    exclude_first: frozenset[int] = frozenset()  # never the first token: asking for an alternative answer


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


class KVCache:
    """Fixed key/value buffers, one pair per layer: ``[1, kv_heads, max_len, head_dim]``."""

    def __init__(self, layers: int, kv_heads: int, head_dim: int, max_len: int, dtype: torch.dtype,
                 device: torch.device) -> None:
        shape = (1, kv_heads, max_len, head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.max_len = max_len

    def update(self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write ``k, v [1, kv, S, hd]`` at positions start.. and return all valid keys/values so far."""
        end = start + k.shape[2]
        self.k[layer][:, :, start:end] = k
        self.v[layer][:, :, start:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """Llama's rotary embedding pairs dimension i with i + head_dim/2."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


ROWS_FOR_WIDE_MATMUL = 8  # from this many rows (prefill), half-precision weights are widened for the matmul


class Proj:
    """One or more bias-free projections reading the same input (q/k/v; gate/up), as one matmul.

    Plain ``nn.Linear`` weights are concatenated once and the modules' weights become views into the
    fused tensor (no memory duplicated).  Anything else (bitsandbytes 4-bit layers) runs module by module.

    Why two paths for half-precision weights with float32 activations (our CPU setting): one row (a
    decoded token) is memory-bound, so the matmul runs in the weights' dtype and reads half the bytes;
    many rows (a prefill) are compute-bound, where CPU half-precision GEMM is slow, so the weights are
    widened to float32 for that call.  Both paths round the activations to the weights' dtype first and
    accumulate in float32, so they compute the same products and differ only in summation order: a
    prompt prefilled in one piece and one extended token by token give the same greedy output.
    """

    def __init__(self, modules: list[Any]) -> None:
        self.modules = modules
        self.weight: torch.Tensor | None = None
        if all(type(m) is nn.Linear and m.bias is None for m in modules):
            fused = torch.cat([m.weight.detach() for m in modules]) if len(modules) > 1 else modules[0].weight.detach()
            row = 0
            for m in modules:
                rows = m.weight.shape[0]
                m.weight = nn.Parameter(fused[row:row + rows], requires_grad=False)
                row += rows
            self.weight = fused  # [sum(out), in]

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        """``h [1, S, in]`` in the activations' dtype → ``[1, S, sum(out)]`` in the same dtype."""
        w = self.weight
        if w is None:  # e.g. bitsandbytes 4-bit layers: they cast to their compute dtype themselves
            return torch.cat([m(h) for m in self.modules], dim=-1).to(h.dtype)
        if w.dtype == h.dtype:
            return F.linear(h, w)
        if h.shape[-2] >= ROWS_FOR_WIDE_MATMUL:
            return F.linear(h.to(w.dtype).to(h.dtype), w.to(h.dtype))
        return F.linear(h.to(w.dtype), w).to(h.dtype)


class Layer:
    """One decoder layer's weights, arranged for the fewest calls per token."""

    def __init__(self, layer: Any) -> None:  # a transformers LlamaDecoderLayer (attributes are dynamic)
        attn, mlp = layer.self_attn, layer.mlp
        self.attn_norm = (layer.input_layernorm.weight, layer.input_layernorm.variance_epsilon)
        self.mlp_norm = (layer.post_attention_layernorm.weight, layer.post_attention_layernorm.variance_epsilon)
        self.qkv = Proj([attn.q_proj, attn.k_proj, attn.v_proj])
        self.o_proj = Proj([attn.o_proj])
        self.gate_up = Proj([mlp.gate_proj, mlp.up_proj])
        self.down_proj = Proj([mlp.down_proj])
        self.ffn: int = mlp.gate_proj.out_features


class LlamaRunner:
    """A lean forward pass over a Hugging Face ``LlamaForCausalLM``'s weights, with our KV cache.

    Per token and layer: norm, one q/k/v matmul, rotary, cache write, attention, output matmul, norm, one
    gate/up matmul, SiLU-gate, down matmul: about 20 tensor ops instead of the generic forward's ~60.
    """

    def __init__(self, model: Any, max_len: int) -> None:  # a transformers LlamaForCausalLM
        config = model.config
        if getattr(config, "model_type", None) != "llama":
            raise EngineError(
                f"unsupported architecture {getattr(config, 'model_type', '?')!r}: the engine runs Llama-family "
                "checkpoints (Code Llama)"
            )
        if getattr(config, "hidden_act", "silu") != "silu" or getattr(config, "attention_bias", False):
            raise EngineError("unsupported Llama variant (needs SiLU MLP and bias-free attention)")
        self.model = model
        inner = model.model
        self.n_heads: int = config.num_attention_heads
        self.n_kv: int = config.num_key_value_heads or self.n_heads
        self.head_dim: int = getattr(config, "head_dim", None) or config.hidden_size // self.n_heads
        self.max_len = min(max_len, config.max_position_embeddings)
        self.device: torch.device = inner.embed_tokens.weight.device
        self.weight_dtype: torch.dtype = inner.embed_tokens.weight.dtype
        # On CPU, half-precision weights halve the bytes read per token (decode is memory-bound there) but
        # half-precision attention and norms are slow: activations and the cache stay float32.
        self.act_dtype = torch.float32 if self.device.type == "cpu" else self.weight_dtype
        self.layers = [Layer(layer) for layer in inner.layers]
        self.embed: Callable[[torch.Tensor], torch.Tensor] = inner.embed_tokens
        self.lm_head = Proj([model.lm_head])
        self.final_norm: tuple[torch.Tensor, float] = (inner.norm.weight, inner.norm.variance_epsilon)
        self.cos, self.sin = self._rope_tables(inner.rotary_emb)
        self.cache = KVCache(len(self.layers), self.n_kv, self.head_dim, self.max_len, self.act_dtype, self.device)

    def _rope_tables(self, rotary: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin for every position, computed once by the model's own rotary module (scaling included)."""
        with torch.inference_mode():
            probe = torch.zeros(1, 1, dtype=torch.float32, device=self.device)
            cos, sin = rotary(probe, torch.arange(self.max_len, device=self.device).unsqueeze(0))
        return cos[0].to(self.act_dtype), sin[0].to(self.act_dtype)  # [max_len, hd]

    def _norm(self, x: torch.Tensor, norm: tuple[torch.Tensor, float]) -> torch.Tensor:
        weight, eps = norm
        return F.rms_norm(x, (x.shape[-1],), weight.to(x.dtype), eps)

    @torch.inference_mode()
    def forward(self, ids: list[int], start: int) -> torch.Tensor:
        """Run ``ids`` at positions start.. (writing the cache); return the last position's logits ``[V]``."""
        n = len(ids)
        tokens = torch.tensor([ids], dtype=torch.long, device=self.device)  # [1, S]
        x = self.embed(tokens).to(self.act_dtype)  # [1, S, D]
        cos, sin = self.cos[start:start + n], self.sin[start:start + n]  # [S, hd], broadcast over heads
        mask = self._mask(start, n)
        for i, layer in enumerate(self.layers):
            x = x + self._attention(i, layer, self._norm(x, layer.attn_norm), cos, sin, start, mask)
            gate, up = layer.gate_up(self._norm(x, layer.mlp_norm)).split(layer.ffn, dim=-1)
            x = x + layer.down_proj(F.silu(gate) * up)
        last = self._norm(x[:, -1, :], self.final_norm)  # [1, D]
        return self.lm_head(last.unsqueeze(0))[0, 0].float()  # [V]

    def _attention(self, i: int, layer: Layer, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                   start: int, mask: torch.Tensor | None) -> torch.Tensor:
        n, hd = h.shape[1], self.head_dim
        qkv = layer.qkv(h).view(1, n, self.n_heads + 2 * self.n_kv, hd).transpose(1, 2)  # [1, H+2KV, S, hd]
        qk, v = qkv[:, : self.n_heads + self.n_kv], qkv[:, self.n_heads + self.n_kv:]
        qk = qk * cos + rotate_half(qk) * sin  # rotary on queries and keys at once
        q, k = qk[:, : self.n_heads], qk[:, self.n_heads:]
        keys, values = self.cache.update(i, start, k, v)  # [1, KV, start+S, hd]
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, enable_gqa=self.n_kv != self.n_heads)
        return layer.o_proj(out.transpose(1, 2).reshape(1, n, self.n_heads * hd))

    def _mask(self, start: int, n: int) -> torch.Tensor | None:
        """Causal mask for a block of n new queries after ``start`` cached keys (None for one query)."""
        if n == 1:
            return None
        rows = torch.arange(start, start + n, device=self.device).unsqueeze(1)
        cols = torch.arange(start + n, device=self.device).unsqueeze(0)
        return cols <= rows  # [S, start+S], True = may attend


def common_prefix_len(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix of two id lists."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class Engine:
    """Greedy decoding with prefix reuse.  Not thread-safe: one model worker owns it."""

    def __init__(self, model: Any, max_context: int, reuse_cache: bool = True, decode: str = "auto",
                 vocab_limit: int | None = None) -> None:
        from model_backend.static_decode import StaticDecoder, resolve_mode  # it builds on LlamaRunner

        self.runner = LlamaRunner(model, max_context)
        # Checkpoints often pad the embedding matrix past the tokenizer (to a multiple of 64, or Code Llama 7B's
        # 32016 with a smaller tokenizer): ids at or past the tokenizer's size have no text, so never pick them.
        vocab = int(model.config.vocab_size)
        self.vocab_limit: int | None = vocab_limit if vocab_limit is not None and vocab_limit < vocab else None
        self.reuse_cache = reuse_cache
        self.cached_ids: list[int] = []  # ids whose keys/values are valid in the cache, in order
        # "static": fixed-shape decode step (static_decode.py), replayed from CUDA graphs on CUDA; auto = on CUDA
        self.decode = resolve_mode(decode, self.runner.device)
        self.static = StaticDecoder(self.runner) if self.decode == "static" else None
        self.forward: Callable[[list[int], int], torch.Tensor] = (
            self.static.forward if self.static is not None else self.runner.forward)

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
        logits = self.forward(prompt[reused:], reused)
        self.cached_ids = list(prompt)
        t1 = time.perf_counter()
        ids, stop = self._decode(req, logits)
        t2 = time.perf_counter()
        return GenerationResult(
            ids=ids, stop=stop, prompt_tokens=len(prompt), reused_tokens=reused,
            prefilled_tokens=len(prompt) - reused, prefill_ms=(t1 - t0) * 1e3, decode_ms=(t2 - t1) * 1e3,
        )

    def _decode(self, req: GenerationRequest, logits: torch.Tensor) -> tuple[list[int], StopReason]:
        """Pick tokens greedily; feed each back (cache grows by one per step) until something stops it."""
        out: list[int] = []
        while True:
            allowed = req.constrain(out) if req.constrain is not None else None
            token = self._pick(logits, allowed, req.exclude_first if not out else frozenset())
            if token in req.stop_ids:
                return out, "eos"
            out.append(token)
            if req.on_token is not None:
                req.on_token(out)
            reason = self._stop_after(req, out)
            if reason is not None:
                return out, reason
            logits = self.forward([token], len(self.cached_ids))
            self.cached_ids.append(token)

    def _stop_after(self, req: GenerationRequest, out: list[int]) -> StopReason | None:
        if req.should_stop is not None and req.should_stop(out):
            return "rule"
        if len(out) >= req.max_new_tokens:
            return "max_tokens"
        if req.cancel is not None and req.cancel.is_set():
            return "cancelled"
        if req.deadline is not None and time.monotonic() >= req.deadline:
            return "time"
        if len(self.cached_ids) + 1 >= self.max_context:
            return "context"
        return None

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
        return int(torch.argmax(logits if self.vocab_limit is None else logits[:self.vocab_limit]))

    def reset(self) -> None:
        """Forget the cache (e.g. after an error mid-forward)."""
        self.cached_ids = []

    def warm_up(self, bos_id: int = 1) -> None:
        """One short prefill and decode (lazy initialisations), every CUDA graph captured, then a clean cache."""
        n = max(1, min(16, self.max_context - 3))
        self.generate(GenerationRequest(prompt_ids=[bos_id] * n, max_new_tokens=2, stop_ids=set()))
        if self.static is not None:
            self.static.capture_all(bos_id)
        self.reset()
