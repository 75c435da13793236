"""The compiled CPU decode step: the eager step's greedy output, from fused loops over a half-precision KV cache.

The reference is the same engine before compiling (``decode: compiled`` not warmed up decodes eagerly over the same
half-precision cache), so what is compared is the compiled arithmetic alone; the embedded model in its shipped fp16
weights, on real code from this repository, one request per keystroke with cache reuse, as the server sends them.
Compiling runs once per module (Inductor's on-disk cache makes later compiles in the same run quick).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import torch
from torch._dynamo.utils import counters

from lsp_server.completion.prompts import build_prompt
from model_backend.compiled_step import MIN_START, CompiledStep
from model_backend.engine import Engine
from model_backend.generation import GenerationRequest
from model_backend.loading import LoadSpec, load
from model_backend.memory import allocated_kv_bytes
from model_backend.tokenization import CodeLlamaTokenizer
from tests.model_backend.cpu_steps import TEXT, assert_decodes_as_eager, keystrokes
from tests.model_backend.cpu_steps import engine as any_engine


@pytest.fixture(scope="module")
def loaded() -> Any:
    return load(LoadSpec(dtype="float16"))


def engine(loaded: Any, warm: bool, **kw: Any) -> Engine:
    return any_engine(loaded, "compiled", warm, **kw)


@pytest.fixture(scope="module")
def compiled(loaded: Any) -> Engine:
    e = engine(loaded, warm=True)
    assert e.decode_step == "compiled", e.compiled.failed if e.compiled else "no compiled step"
    return e


def test_compiled_steps_give_the_eager_steps_tokens_and_logits(loaded: Any, tok: CodeLlamaTokenizer,
                                                              compiled: Engine) -> None:
    eager = engine(loaded, warm=False)  # same half-precision cache, eager arithmetic
    assert eager.decode_step == "eager" and compiled.decode_step == "compiled"
    assert_decodes_as_eager(compiled, eager, tok)


def test_one_step_matches_the_eager_forward_far_into_the_window(loaded: Any, compiled: Engine) -> None:
    eager = engine(loaded, warm=False)
    ids = torch.randint(3, 4000, (2100,), generator=torch.Generator().manual_seed(3)).tolist()
    eager.runner.forward(ids[:2000], 0)
    compiled.reset()
    compiled.runner.forward(ids[:2000], 0)
    assert compiled.compiled is not None
    graphs = counters["stats"]["unique_graphs"]
    for pos in [*range(2000, 2100, 7), MIN_START, 4094]:  # the position is symbolic: no recompile where it covers
        token = ids[pos % len(ids)]
        expected = eager.runner.forward([token], pos)
        got = compiled.compiled.step(token, pos)
        assert int(got.argmax()) == int(expected.argmax()), f"position {pos}"
        assert torch.allclose(got, expected, atol=2e-2), f"position {pos}"
        if 2000 <= pos < 2099:  # fill the gap both ways so the next checked position sees the same cache
            eager.runner.forward(ids[pos + 1:pos + 7], pos + 1)
            compiled.runner.forward(ids[pos + 1:pos + 7], pos + 1)
    assert counters["stats"]["unique_graphs"] == graphs  # compiled once, at load
    assert not compiled.compiled.covers(0) and not compiled.compiled.covers(4095)  # those run eagerly
    compiled.reset()


def test_speculative_decoding_on_the_compiled_step_keeps_the_output(loaded: Any, tok: CodeLlamaTokenizer,
                                                                     compiled: Engine) -> None:
    spec = engine(loaded, warm=True, speculative=True)
    compiled.reset()
    cut = TEXT.index("def ", len(TEXT) // 2)
    prefix, suffix = TEXT[:cut], TEXT[cut:]
    accepted = 0
    for _ in range(8):  # the user types along the suggestion, two characters a keystroke
        req = GenerationRequest(prompt_ids=build_prompt(tok, prefix, suffix, "spm").ids, max_new_tokens=16,
                                stop_ids=tok.stop_ids())
        a, b = compiled.generate(req), spec.generate(req)
        assert b.ids == a.ids and b.stop == a.stop
        accepted += int(b.timings["prefill_accepted"])
        assert b.timings["accepted"] == b.timings["prefill_accepted"]  # no drafts while decoding (see the engine)
        prefix += tok.decode_middle(a.ids)[:2]
    assert accepted > 8  # each keystroke's prefill pass verified the rest of the previous suggestion
    # with the compiled step, drafts come only from the previous suggestion (a verify pass costs ~3 steps)
    assert spec.drafter.prompt_cap == 0 and not spec.draft_while_decoding
    assert Engine(loaded.model, 512, speculative=True).drafter.prompt_cap > 0


def test_the_cache_is_half_precision_and_takes_half_the_memory(loaded: Any, compiled: Engine) -> None:
    eager = Engine(loaded.model, 4096)
    assert compiled.runner.cache.k[0].dtype == torch.float16 and eager.runner.cache.k[0].dtype == torch.float32
    assert allocated_kv_bytes(compiled) * 2 == allocated_kv_bytes(eager)


def test_a_failed_compile_leaves_the_eager_step(loaded: Any, tok: CodeLlamaTokenizer,
                                                caplog: pytest.LogCaptureFixture) -> None:
    e = engine(loaded, warm=False)
    assert isinstance(e.compiled, CompiledStep)

    def broken(*args: Any) -> Any:
        raise RuntimeError("no C++ compiler")

    e.compiled.fn = broken
    with caplog.at_level(logging.WARNING):
        e.warm_up(tok.bos_id)
    assert e.decode_step == "eager" and "no C++ compiler" in caplog.text
    assert e.drafter.prompt_cap > 0 and e.draft_while_decoding  # the eager step's drafting policy again
    req = keystrokes(tok, 1)[0]
    assert e.generate(req).ids == engine(loaded, warm=False).generate(req).ids


def test_quantised_projections_keep_the_eager_step(loaded: Any) -> None:
    e = engine(loaded, warm=False)
    e.runner.layers[0].qkv.weight = None  # as with bitsandbytes 4-bit layers: no plain weight to read
    with pytest.raises(ValueError, match="plain"):
        CompiledStep(e.runner)
