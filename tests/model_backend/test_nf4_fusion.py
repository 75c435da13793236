"""NF4 q/k/v and gate/up fused into one 4-bit product each: the same logits as separate products, no 4-bit data
duplicated.  bitsandbytes' CPU kernels run here (the GPU figures come from benchmarks/gpu_bench.py)."""

from __future__ import annotations

from typing import Any

import bitsandbytes as bnb
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from model_backend.engine import Engine
from model_backend.generation import GenerationRequest
from model_backend.llama import LlamaRunner, Proj
from model_backend.nf4_fusion import fuse_linear4bit


def nf4(linear: torch.nn.Linear, nested: bool) -> Any:
    """``linear`` as a bitsandbytes NF4 layer (quantized on CPU), bf16 compute as the loader sets it."""
    layer = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=False, compute_dtype=torch.bfloat16,
                              quant_type="nf4", compress_statistics=nested)
    layer.weight = bnb.nn.Params4bit(linear.weight.detach().to(torch.bfloat16), requires_grad=False,
                                     quant_type="nf4", compress_statistics=nested)
    return layer.to("cpu")


def nf4_model(nested: bool, hidden: int = 128, ffn: int = 256) -> Any:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=512, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=ffn, max_position_embeddings=512,
                         initializer_range=0.08)
    model = LlamaForCausalLM(config).eval().to(torch.bfloat16)
    for layer in model.model.layers:
        for owner, names in ((layer.self_attn, ("q_proj", "k_proj", "v_proj", "o_proj")),
                             (layer.mlp, ("gate_proj", "up_proj", "down_proj"))):
            for name in names:
                setattr(owner, name, nf4(getattr(owner, name), nested))
    return model


def unfused(runner: LlamaRunner) -> LlamaRunner:
    for layer in runner.layers:
        layer.qkv = Proj(layer.qkv.modules, fuse_4bit=False)
        layer.gate_up = Proj(layer.gate_up.modules, fuse_4bit=False)
    return runner


@pytest.mark.parametrize("nested", [False, True])
def test_fused_products_give_the_separate_products_logits(nested: bool) -> None:
    model = nf4_model(nested)
    fused = LlamaRunner(model, 256)
    assert all(layer.qkv.fused_4bit is not None and layer.gate_up.fused_4bit is not None for layer in fused.layers)
    separate = unfused(LlamaRunner(model, 256))
    assert all(layer.qkv.fused_4bit is None for layer in separate.layers)
    ids = list(range(3, 40))
    assert torch.equal(fused.forward(ids, 0), separate.forward(ids, 0))  # a prefill
    for i, token in enumerate([7, 11, 13, 17]):  # decoded tokens, one row each, and a verify block
        pos = len(ids) + i
        assert torch.equal(fused.forward([token], pos), separate.forward([token], pos))
    assert torch.equal(fused.forward_all([5, 6, 7], 50), separate.forward_all([5, 6, 7], 50))


def test_the_engine_decodes_the_same_tokens_with_fusion() -> None:
    model = nf4_model(nested=False)
    a, b = Engine(model, 256), Engine(model, 256)
    unfused(b.runner)
    req = GenerationRequest(prompt_ids=list(range(3, 60)), max_new_tokens=12, stop_ids=set())
    assert a.generate(req).ids == b.generate(req).ids


def test_no_4bit_data_is_duplicated() -> None:
    model = nf4_model(nested=False)
    runner = LlamaRunner(model, 256)
    attn = model.model.layers[0].self_attn
    data = runner.layers[0].qkv.fused_4bit.weight.data
    start, end = data.data_ptr(), data.data_ptr() + data.numel() * data.element_size()
    for proj in (attn.q_proj, attn.k_proj, attn.v_proj):  # the modules read the fused bytes
        assert start <= proj.weight.data.data_ptr() < end
    assert data.numel() == sum(p.weight.data.numel() for p in (attn.q_proj, attn.k_proj, attn.v_proj))


def test_projections_that_cannot_be_fused_run_one_by_one() -> None:
    odd = [nf4(torch.nn.Linear(100, 40, bias=False), nested=False),  # 40 x 100 = 4,000: a block of 64 would straddle
           nf4(torch.nn.Linear(100, 40, bias=False), nested=False)]
    assert fuse_linear4bit(odd) is None
    x = torch.randn(1, 1, 100)
    proj = Proj(odd)
    assert proj.fused_4bit is None
    assert torch.equal(proj(x), torch.cat([m(x) for m in odd], dim=-1).to(x.dtype))
    plain = [torch.nn.Linear(64, 64, bias=False), torch.nn.Linear(64, 64, bias=False)]
    assert fuse_linear4bit(plain) is None
