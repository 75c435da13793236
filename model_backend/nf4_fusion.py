"""Several bitsandbytes NF4 projections that read the same input (q/k/v; gate/up) as one 4-bit product.

Why: a decoded token of a 4-bit 7B model runs ~7 small products per layer; one product over the concatenated rows
does the same arithmetic in fewer, larger kernel calls (one batch-1 GEMV instead of three for q/k/v).

Why it is exact: NF4 quantises the row-major flattened weight in blocks of ``blocksize`` values, each with its own
absmax.  When every projection's ``out × in`` is a multiple of the block size, the blocks of the concatenated
weight are exactly the projections' blocks one after the other, so the packed 4-bit data and the absmax arrays are
simply concatenated: nothing is quantised again.  A double-quantised absmax (``compress_statistics``) is expanded
to float32 first (its second-level blocks would not line up).  The projections' own weights become views into the
fused data, so no 4-bit data is duplicated.
"""

from __future__ import annotations

from typing import Any

import torch


def fuse_linear4bit(modules: list[Any]) -> Any | None:
    """One ``bnb.nn.Linear4bit`` whose output is the modules' outputs concatenated, or None where they cannot be
    fused (not all 4-bit, a bias, different settings or input sizes, blocks that would straddle two weights)."""
    if len(modules) < 2:
        return None
    try:
        import bitsandbytes as bnb
        from bitsandbytes.functional import QuantState, dequantize_blockwise
    except ImportError:
        return None
    if not all(isinstance(m, bnb.nn.Linear4bit) and m.bias is None for m in modules):
        return None
    states = [m.weight.quant_state for m in modules]
    if any(s is None for s in states):
        return None
    first = states[0]
    if any(s.blocksize != first.blocksize or s.quant_type != first.quant_type or s.dtype != first.dtype
           or s.shape[1] != first.shape[1] or (s.shape[0] * s.shape[1]) % s.blocksize for s in states):
        return None
    if any(m.compute_dtype != modules[0].compute_dtype or m.weight.dtype != modules[0].weight.dtype for m in modules):
        return None
    absmax = [(dequantize_blockwise(s.absmax, s.state2) + s.offset) if s.nested else s.absmax for s in states]
    parts = [m.weight.data.reshape(-1) for m in modules]
    data = torch.cat(parts)
    rows = sum(int(s.shape[0]) for s in states)
    state = QuantState(absmax=torch.cat([a.float() for a in absmax]), shape=torch.Size([rows, int(first.shape[1])]),
                       code=first.code, blocksize=first.blocksize, quant_type=first.quant_type, dtype=first.dtype)
    fused = bnb.nn.Linear4bit(int(first.shape[1]), rows, bias=False, compute_dtype=modules[0].compute_dtype,
                              quant_type=first.quant_type, device="meta")
    shape = (data.numel(), 1) if modules[0].weight.data.dim() == 2 else (data.numel(),)
    fused.weight = bnb.nn.Params4bit(data=data.view(shape), requires_grad=False, quant_state=state,
                                     blocksize=first.blocksize, compress_statistics=False, quant_type=first.quant_type,
                                     quant_storage=data.dtype, module=fused, bnb_quantized=True)
    start = 0
    for m, part in zip(modules, parts, strict=True):  # the originals now read the fused bytes: nothing duplicated
        m.weight.data = data[start:start + part.numel()].view(m.weight.data.shape)
        start += part.numel()
    return fused
