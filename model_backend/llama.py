"""The model: a lean Llama forward pass over a Hugging Face checkpoint's weights, with our own KV cache.

Why our own forward over the model's modules: Hugging Face's generic forward spends ~13 ms per token of
Python on mask building, cache bookkeeping and checks, which dwarfs the arithmetic of a small model.
``LlamaRunner`` calls the checkpoint's own modules (embeddings, norms, projections, MLP: so 4-bit
bitsandbytes layers work unchanged) and does only attention and the cache itself, gpt-fast style: one
fixed buffer per layer, written by position.  Reuse = keep the first N positions and overwrite the rest,
which is also what a static (CUDA-graph friendly) cache needs.

``LlamaRunner.block`` is the one decoder-layer step; the eager forward here and the fixed-shape step in
``static_decode.py`` differ only in how they write and read the cache.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from model_backend.generation import EngineError
from model_backend.nf4_fusion import fuse_linear4bit

# Writes a layer's new keys/values into the cache and returns the keys/values to attend to.
CacheWrite = Callable[[int, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class KVCache:
    """Fixed key/value buffers, one pair per layer: ``[1, kv_heads, max_len, head_dim]``.

    Stored in ``dtype``; ``update`` hands attention keys/values in ``read_dtype`` (a half-precision cache, as the
    compiled CPU step keeps, is widened here for the eager forward's attention)."""

    def __init__(self, layers: int, kv_heads: int, head_dim: int, max_len: int, dtype: torch.dtype,
                 device: torch.device, read_dtype: torch.dtype | None = None) -> None:
        shape = (1, kv_heads, max_len, head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.max_len = max_len
        self.read_dtype = read_dtype or dtype

    def update(self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write ``k, v [1, kv, S, hd]`` at positions start.. and return all valid keys/values so far."""
        end = start + k.shape[2]
        self.k[layer][:, :, start:end] = k
        self.v[layer][:, :, start:end] = v
        keys, values = self.k[layer][:, :, :end], self.v[layer][:, :, :end]
        return keys.to(self.read_dtype), values.to(self.read_dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """Llama's rotary embedding pairs dimension i with i + head_dim/2."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


ROWS_FOR_WIDE_MATMUL = 8  # from this many rows (prefill), half-precision weights are widened for the matmul


class Proj:
    """One or more bias-free projections reading the same input (q/k/v; gate/up), as one matmul.

    Plain ``nn.Linear`` weights are concatenated once and the modules' weights become views into the
    fused tensor (no memory duplicated); bitsandbytes NF4 layers likewise become one 4-bit product
    (``nf4_fusion.py``, exact); anything else runs module by module.

    Why two paths for half-precision weights with float32 activations (our CPU setting): one row (a
    decoded token) is memory-bound, so the matmul runs in the weights' dtype and reads half the bytes;
    many rows (a prefill) are compute-bound, where CPU half-precision GEMM is slow, so the weights are
    widened to float32 for that call.  Both paths round the activations to the weights' dtype first and
    accumulate in float32, so they compute the same products and differ only in summation order: a
    prompt prefilled in one piece and one extended token by token give the same greedy output.
    """

    def __init__(self, modules: list[Any], fuse_4bit: bool = True) -> None:
        self.modules = modules
        self.weight: torch.Tensor | None = None
        self.fused_4bit: Any = None  # bitsandbytes NF4 projections as one 4-bit product (nf4_fusion.py)
        if fuse_4bit and not all(type(m) is nn.Linear for m in modules):
            self.fused_4bit = fuse_linear4bit(modules)
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
            if self.fused_4bit is not None:
                return self.fused_4bit(h).to(h.dtype)
            return torch.cat([m(h) for m in self.modules], dim=-1).to(h.dtype)
        if w.dtype == h.dtype:
            return F.linear(h, w)
        if h.shape[-2] >= ROWS_FOR_WIDE_MATMUL:
            return F.linear(h.to(w.dtype).to(h.dtype), w.to(h.dtype))
        return F.linear(h.to(w.dtype), w).to(h.dtype)


def norm_of(module: Any, act_dtype: torch.dtype) -> tuple[torch.Tensor, float]:
    """An RMSNorm's weight in the activations' dtype (cast once here, not on every token) and its epsilon."""
    return module.weight.detach().to(act_dtype), float(module.variance_epsilon)


class Layer:
    """One decoder layer's weights, arranged for the fewest calls per token."""

    def __init__(self, layer: Any, act_dtype: torch.dtype) -> None:  # a transformers LlamaDecoderLayer
        attn, mlp = layer.self_attn, layer.mlp
        self.attn_norm = norm_of(layer.input_layernorm, act_dtype)
        self.mlp_norm = norm_of(layer.post_attention_layernorm, act_dtype)
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

    def __init__(self, model: Any, max_len: int, kv_dtype: torch.dtype | None = None) -> None:
        # model: a transformers LlamaForCausalLM; kv_dtype: the KV cache's storage (default: the activations')
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
        self.layers = [Layer(layer, self.act_dtype) for layer in inner.layers]
        self.embed: Callable[[torch.Tensor], torch.Tensor] = inner.embed_tokens
        self.lm_head = Proj([model.lm_head])
        self.final_norm = norm_of(inner.norm, self.act_dtype)
        self.cos, self.sin = self._rope_tables(inner.rotary_emb)
        self.cache = KVCache(len(self.layers), self.n_kv, self.head_dim, self.max_len, kv_dtype or self.act_dtype,
                             self.device, read_dtype=self.act_dtype)

    def _rope_tables(self, rotary: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin for every position, computed once by the model's own rotary module (scaling included)."""
        with torch.inference_mode():
            probe = torch.zeros(1, 1, dtype=torch.float32, device=self.device)
            cos, sin = rotary(probe, torch.arange(self.max_len, device=self.device).unsqueeze(0))
        return cos[0].to(self.act_dtype), sin[0].to(self.act_dtype)  # [max_len, hd]

    def norm(self, x: torch.Tensor, norm: tuple[torch.Tensor, float]) -> torch.Tensor:
        weight, eps = norm
        return F.rms_norm(x, (x.shape[-1],), weight, eps)

    @torch.inference_mode()
    def forward(self, ids: list[int], start: int) -> torch.Tensor:
        """Run ``ids`` at positions start.. (writing the cache); return the last position's logits ``[V]``."""
        return self.logits(self._hidden(ids, start))

    @torch.inference_mode()
    def forward_all(self, ids: list[int], start: int) -> torch.Tensor:
        """Like ``forward`` but every position's logits ``[S, V]``: a speculative verify block needs each row."""
        return self.logits(self._hidden(ids, start), rows=len(ids))

    def _hidden(self, ids: list[int], start: int) -> torch.Tensor:
        """The final hidden states ``[1, S, D]`` of ``ids`` at positions start.., the cache written."""
        n = len(ids)
        tokens = torch.tensor([ids], dtype=torch.long, device=self.device)  # [1, S]
        x = self.embed(tokens).to(self.act_dtype)  # [1, S, D]
        cos, sin = self.cos[start:start + n], self.sin[start:start + n]  # [S, hd], broadcast over heads
        mask = self._mask(start, n)

        def write(i: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.cache.update(i, start, k, v)  # [1, KV, start+S, hd]

        for i, layer in enumerate(self.layers):
            x = self.block(i, layer, x, cos, sin, write, mask)
        return x

    def block(self, i: int, layer: Layer, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
              write: CacheWrite, mask: torch.Tensor | None) -> torch.Tensor:
        """One decoder layer on ``x [1, S, D]``: norm, one q/k/v matmul, rotary, cache write, attention, output
        matmul, norm, one gate/up matmul, SiLU-gate, down matmul: about 20 tensor ops."""
        n, hd, heads, kv = x.shape[1], self.head_dim, self.n_heads, self.n_kv
        qkv = layer.qkv(self.norm(x, layer.attn_norm)).view(1, n, heads + 2 * kv, hd).transpose(1, 2)
        qk, v = qkv[:, : heads + kv], qkv[:, heads + kv:]  # [1, H+KV, S, hd], [1, KV, S, hd]
        qk = qk * cos + rotate_half(qk) * sin  # rotary on queries and keys at once
        q, k = qk[:, :heads], qk[:, heads:]
        keys, values = write(i, k, v)
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, enable_gqa=kv != heads)
        x = x + layer.o_proj(out.transpose(1, 2).reshape(1, n, heads * hd))
        gate, up = layer.gate_up(self.norm(x, layer.mlp_norm)).split(layer.ffn, dim=-1)
        return x + layer.down_proj(F.silu(gate) * up)

    def logits(self, x: torch.Tensor, rows: int = 0) -> torch.Tensor:
        """Logits (float32) from the final hidden states ``[1, S, D]``: the last position's ``[V]``, or with
        ``rows`` the last ``rows`` positions' ``[rows, V]``.  The lm-head product (the largest matmul of a small
        model) runs only on the rows asked for, never on a whole prefill."""
        if not rows:
            last = self.norm(x[:, -1, :], self.final_norm)  # [1, D]
            return self.lm_head(last.unsqueeze(0))[0, 0].float()
        tail = self.norm(x[:, -rows:, :], self.final_norm)  # [1, rows, D]
        return self.lm_head(tail)[0].float()

    def _mask(self, start: int, n: int) -> torch.Tensor | None:
        """Causal mask for a block of n new queries after ``start`` cached keys (None for one query)."""
        if n == 1:
            return None
        rows = torch.arange(start, start + n, device=self.device).unsqueeze(1)
        cols = torch.arange(start + n, device=self.device).unsqueeze(0)
        return cols <= rows  # [S, start+S], True = may attend
