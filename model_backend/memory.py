"""What the model and its KV cache take in memory, computed from the configuration (no allocation).

The engine's KV cache is one fixed buffer per layer for keys and one for values, ``[kv_heads, max_len,
head_dim]`` each, allocated once at load: ``max_len`` is the ``contextWindow`` setting (capped at the
checkpoint's ``max_position_embeddings``), so the cache never grows past it.  Code Llama 7B in fp16/bf16:
2 × 32 layers × 32 heads × 128 × 2 bytes = 512 KiB per token, 2 GiB for the default 4,096-token window.
"""

from __future__ import annotations

from typing import Any

import torch


def _get(config: Any, name: str, default: Any = None) -> Any:
    return config.get(name, default) if isinstance(config, dict) else getattr(config, name, default)


def kv_bytes_per_token(config: Any, dtype: torch.dtype = torch.float16) -> int:
    """Keys + values of one token over all layers, for a Llama config (object or ``config.json`` dict)."""
    heads = int(_get(config, "num_attention_heads"))
    kv_heads = int(_get(config, "num_key_value_heads") or heads)
    head_dim = int(_get(config, "head_dim") or int(_get(config, "hidden_size")) // heads)
    layers = int(_get(config, "num_hidden_layers"))
    return 2 * layers * kv_heads * head_dim * torch.empty((), dtype=dtype).element_size()


def kv_cache_bytes(config: Any, context: int, dtype: torch.dtype = torch.float16) -> int:
    """The engine's KV buffer for a ``context``-token window (capped like the engine caps it)."""
    limit = _get(config, "max_position_embeddings")
    tokens = min(context, int(limit)) if limit else context
    return tokens * kv_bytes_per_token(config, dtype)


def allocated_kv_bytes(engine: Any) -> int:
    """What an ``Engine``'s cache really holds (to check the formula against)."""
    cache = engine.runner.cache
    return sum(t.numel() * t.element_size() for t in [*cache.k, *cache.v])


def model_bytes(model: Any) -> int:
    """Parameters and buffers as stored (4-bit weights count their packed bytes and quantisation state)."""
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    total += sum(b.numel() * b.element_size() for b in model.buffers())
    for module in model.modules():  # bitsandbytes keeps absmax etc. in the weight's quant_state
        state = getattr(getattr(module, "weight", None), "quant_state", None)
        absmax = getattr(state, "absmax", None)
        if isinstance(absmax, torch.Tensor):
            total += absmax.numel() * absmax.element_size()
    return total


def gib(n: float) -> float:
    return round(n / 2**30, 3)
