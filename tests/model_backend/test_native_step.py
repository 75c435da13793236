"""The native CPU decode step (hand-written C++): the eager step's greedy output over a half-precision KV cache.

The reference is the same engine before the step is built (``decode: native`` not warmed up decodes eagerly over the
same half-precision cache), so what is compared is the step's arithmetic alone: the embedded model in its shipped
fp16 weights and widened to fp32, on real code from this repository, one request per keystroke with cache reuse.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import torch

from model_backend import native_step
from model_backend.compiled_step import CompiledStep
from model_backend.engine import Engine
from model_backend.loading import LoadSpec, load
from model_backend.native_step import NativeStep
from model_backend.tokenization import CodeLlamaTokenizer
from tests.model_backend.cpu_steps import assert_decodes_as_eager, keystrokes
from tests.model_backend.cpu_steps import engine as any_engine


@pytest.fixture(scope="module")
def loaded() -> Any:
    return load(LoadSpec(dtype="float16"))


def engine(loaded: Any, warm: bool, **kw: Any) -> Engine:
    return any_engine(loaded, "native", warm, **kw)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_native_steps_give_the_eager_steps_tokens_and_cache(dtype: str, loaded: Any,
                                                            tok: CodeLlamaTokenizer) -> None:
    model = loaded if dtype == "float16" else load(LoadSpec(dtype=dtype))
    native, eager = engine(model, warm=True), engine(model, warm=False)
    assert native.decode_step == "native" and eager.decode_step == "eager"
    assert_decodes_as_eager(native, eager, tok)


def test_one_step_matches_the_eager_forward_anywhere_in_the_window(loaded: Any) -> None:
    """Far into the window, at its first and its last position, and where the attention row's length is no multiple
    of the vector width."""
    native, eager = engine(loaded, warm=True), engine(loaded, warm=False)
    assert isinstance(native.compiled, NativeStep)
    ids = torch.randint(3, 4000, (3100,), generator=torch.Generator().manual_seed(3)).tolist()
    for e in (native, eager):
        e.runner.forward(ids[:3000], 0)
    for pos in [*range(3000, 3100, 7), 4095]:
        token = ids[pos % len(ids)]
        expected = eager.runner.forward([token], pos)
        got = native.compiled.step(token, pos)
        assert int(got.argmax()) == int(expected.argmax()), f"position {pos}"
        assert torch.allclose(got, expected, atol=2e-2), f"position {pos}"
        if 3000 <= pos < 3099:  # fill the gap both ways so the next checked position sees the same cache
            for e in (native, eager):
                e.runner.forward(ids[pos + 1:pos + 7], pos + 1)
    first = native.compiled.step(ids[0], 0)  # position 0: a one-key attention row
    assert int(first.argmax()) == int(eager.runner.forward([ids[0]], 0).argmax())
    with pytest.raises(ValueError, match="outside the vocabulary"):
        native.compiled.step(native.compiled.vocab, 5)
    with pytest.raises(ValueError, match="outside the KV buffer"):
        native.compiled.step(ids[0], 4096)


def test_several_tokens_in_one_call_give_the_eager_passes_rows(loaded: Any) -> None:
    """A prompt tail or a verify pass runs as one call of up to 16 rows (longer in pieces): each row's logits are the
    eager pass's, each row seeing the cache up to itself, and the keys/values are written as eagerly."""
    native, eager = engine(loaded, warm=True), engine(loaded, warm=False)
    assert isinstance(native.compiled, NativeStep)
    ids = torch.randint(3, 4000, (1300,), generator=torch.Generator().manual_seed(5)).tolist()
    for e in (native, eager):
        e.runner.forward(ids[:1200], 0)
    for start, n in ((1200, 12), (1212, 16), (1228, 21)):  # 21: two calls
        got = native.compiled.run(ids[start:start + n], start, rows=n)
        want = eager.runner.forward_all(ids[start:start + n], start)
        assert got.shape == want.shape == (n, 4096)
        assert torch.equal(got.argmax(-1), want.argmax(-1)), (start, n)
        assert torch.allclose(got, want, atol=2e-2), (start, n)
        last = native.compiled.run(ids[start:start + n], start)  # the same again, only the last row's logits
        assert last.shape == (1, 4096) and torch.allclose(last[0], got[-1], atol=1e-5)
    end = 1249
    for layer in range(len(native.runner.layers)):
        assert torch.allclose(native.runner.cache.v[layer][:, :, :end].float(),
                              eager.runner.cache.v[layer][:, :, :end].float(), atol=2e-2)


def test_speculation_stands_down_on_the_native_step(loaded: Any, tok: CodeLlamaTokenizer) -> None:
    """A verify pass is eager and costs several native steps: with the native step, speculative requests decode
    plainly (no drafts) and give the same suggestions."""
    spec, plain = engine(loaded, warm=True, speculative=True), engine(loaded, warm=True)
    assert not spec.drafts_pay
    for req in keystrokes(tok, 4):
        a, b = plain.generate(req), spec.generate(req)
        assert b.ids == a.ids and b.timings["drafted"] == 0


def test_native_verify_passes_keep_the_output_when_drafting_is_forced(loaded: Any, tok: CodeLlamaTokenizer,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Drafting stands down on the native step by default (it loses on single lines), but its verify rows are the
    same arithmetic as its single steps: forced on, speculation accepts drafts and changes no suggestion."""
    plain = engine(loaded, warm=True)
    monkeypatch.setattr(Engine, "drafts_pay", property(lambda self: True))
    monkeypatch.setattr(Engine, "draft_while_decoding", property(lambda self: True))
    spec = engine(loaded, warm=True, speculative=True)
    accepted = 0
    for req in keystrokes(tok, 6, newline=False):
        a, b = plain.generate(req), spec.generate(req)
        assert b.ids == a.ids and b.stop == a.stop
        accepted += int(b.timings["accepted"])
    assert accepted > 10


def test_where_the_native_step_cannot_run_the_compiled_step_does(loaded: Any, tok: CodeLlamaTokenizer,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(native_step, "cpu_supported", lambda: False)  # e.g. an ARM laptop
    with caplog.at_level(logging.WARNING):
        e = engine(loaded, warm=False)
    assert isinstance(e.compiled, CompiledStep) and "AVX2" in caplog.text
    monkeypatch.undo()

    def no_compiler() -> Path:
        raise ValueError("compiling native_step.cpp failed: g++: not found")

    monkeypatch.setattr(native_step, "build", no_compiler)
    e = engine(loaded, warm=False)
    assert isinstance(e.compiled, NativeStep)
    with caplog.at_level(logging.WARNING):
        e.warm_up(tok.bos_id)
    assert e.decode_step == "compiled" and "g++: not found" in caplog.text
    assert e.drafter.prompt_cap == 0 and not e.draft_while_decoding  # the compiled step's drafting policy
    req = keystrokes(tok, 1)[0]
    assert e.generate(req).ids == engine(loaded, warm=False).generate(req).ids


def test_quantised_projections_are_refused(loaded: Any) -> None:
    e = engine(loaded, warm=False)
    e.runner.layers[0].qkv.weight = None  # as with bitsandbytes 4-bit layers: no plain weight to read
    with pytest.raises(ValueError, match="plain"):
        NativeStep(e.runner)
