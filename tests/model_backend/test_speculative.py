"""Speculative decoding with drafts from the code: the same greedy output as plain decoding, in fewer passes.

The equality checks run the embedded model in float32 on real code from this repository (the typing replay's
file, cut at many cursor positions, SPM prompts with token healing as the server builds them), with every
request rule the server uses: token healing, a newline stop rule, stop ids, a length limit.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from lsp_server.completion.prompts import Prompt, build_prompt
from model_backend.engine import Engine
from model_backend.generation import GenerationRequest
from model_backend.loading import LoadSpec, load
from model_backend.speculative import DRAFT_TOKENS, Drafter, lookup
from model_backend.tokenization import CodeLlamaTokenizer

ROOT = Path(__file__).resolve().parents[2]
TEXT = (ROOT / "benchmarks" / "data" / "inventory.py").read_text()
OTHER = (ROOT / "lsp_server" / "completion" / "typeahead.py").read_text()


@pytest.fixture(scope="module")
def loaded() -> Any:
    return load(LoadSpec(dtype="float32"))


@pytest.fixture(scope="module")
def tok(loaded: Any) -> CodeLlamaTokenizer:
    return loaded.tokenizer


def engines(loaded: Any, context: int = 4096, **kw: Any) -> tuple[Engine, Engine]:
    vocab = loaded.tokenizer.vocab_size
    return (Engine(loaded.model, context, vocab_limit=vocab, **kw),
            Engine(loaded.model, context, vocab_limit=vocab, speculative=True, **kw))


def request(tok: CodeLlamaTokenizer, prompt: Prompt, n: int = 16, newline: bool = True,
            **kw: Any) -> GenerationRequest:
    def stop(ids: list[int]) -> bool:  # the single-line rule: a line break after some code
        return newline and "\n" in tok.decode_middle(ids).lstrip("\n")

    return GenerationRequest(prompt_ids=prompt.ids, max_new_tokens=n, stop_ids=tok.stop_ids(),
                             constrain=lambda ids: prompt.allowed_ids(tok, ids), should_stop=stop, **kw)


def cuts(text: str, count: int) -> list[int]:
    return list(range(len(text) // 10, len(text), len(text) // count))[:count]


def test_lookup_takes_what_followed_the_latest_occurrence() -> None:
    hay = np.array([5, 6, 7, 8, 5, 6, 9, 1, 5, 6])
    assert lookup(hay, len(hay), np.array([5, 6]), 3) == [9, 1, 5]  # the end itself never matches
    assert lookup(hay, len(hay), np.array([7, 8]), 10) == [5, 6, 9, 1, 5, 6]
    assert lookup(hay, len(hay), np.array([4]), 3) == []
    assert lookup(hay, 4, np.array([7, 8]), 3) == []  # nothing after it within the first 4 ids


def test_drafter_prefers_the_longest_match_and_the_previous_suggestion() -> None:
    d = Drafter()
    d.begin([1, 2, 3, 4, 9, 2, 3, 5], room=8)
    assert d.draft(2) == []  # the tail "5" (or "3 5", "2 3 5") occurs nowhere earlier
    d.push(2)
    d.push(3)
    assert d.draft(3) == [5, 2, 3]  # the latest "2 3" is followed by 5
    d.push(4)
    assert d.draft(2) == [9, 2]  # "2 3 4" (longest) wins over the later "3 4"-less matches
    d.finish()
    d.begin([7, 7, 1], room=8)  # next keystroke: the previous answer "2 3 4" is found first
    d.push(2)
    assert d.draft(2) == [3, 4]


def test_drafts_from_the_prompt_are_capped_and_repeated_misses_pause_drafting() -> None:
    d = Drafter(prompt_cap=4, cool_down=3)
    d.begin([9, 1, 2, 3, 4, 5, 6, 7, 9, 1], room=8)
    assert d.draft(8) == [2, 3, 4, 5]  # "9 1" found in the prompt: at most prompt_cap ids
    d.push(7)
    assert d.draft(8) == [9, 1]  # only "7" matches (one id): a weak hint, a short draft
    d.verified(0)
    assert d.draft(8) == [9, 1]  # one miss: drafting goes on
    d.verified(0)  # a second draft in a row of which nothing was kept
    assert [d.draft(8) for _ in range(3)] == [[], [], []]  # paused for cool_down calls
    assert d.draft(8) == [9, 1]
    d.finish()
    d.begin([5, 5, 9, 1], room=8)  # the previous suggestion (here the last request's tail) drafts past the cap
    d.previous = np.array([9, 1, 2, 3, 4, 5, 6, 7, 8])
    assert d.draft(8) == [2, 3, 4, 5, 6, 7, 8]


def test_greedy_output_equals_plain_decoding_over_the_typing_replay(loaded: Any, tok: CodeLlamaTokenizer) -> None:
    plain, spec = engines(loaded)
    passes = tokens = accepted = 0
    for text in (TEXT, OTHER):
        for cut in cuts(text, 6):
            prompt = build_prompt(tok, text[:cut], text[cut:], "spm")
            for newline in (True, False):  # the two shapes: a line, and always 16 tokens
                req = request(tok, prompt, newline=newline)
                a, b = plain.generate(req), spec.generate(req)
                assert b.ids == a.ids and b.stop == a.stop, f"cut {cut}, newline {newline}"
                assert b.token_logprobs == pytest.approx(a.token_logprobs, abs=1e-3)
                passes += int(b.timings["forwards"])
                tokens += len(b.ids)
                accepted += int(b.timings["accepted"])
    assert accepted > 0.2 * tokens and passes < 0.8 * tokens  # the drafts do save passes


def test_keystrokes_with_cache_reuse_equal_plain_and_the_cache_stays_valid(loaded: Any,
                                                                         tok: CodeLlamaTokenizer) -> None:
    plain, spec = engines(loaded)
    cut = TEXT.index("def ", len(TEXT) // 2)
    for k in range(0, 24, 4):  # typing the next line, one request per keystroke
        prompt = build_prompt(tok, TEXT[:cut + k], TEXT[cut + k:], "spm")
        a, b = plain.generate(request(tok, prompt)), spec.generate(request(tok, prompt))
        assert b.ids == a.ids
        assert b.reused_tokens >= a.reused_tokens - 2
    # every position the engine lists as cached holds exactly what a cold prefill of those ids computes
    cached = list(spec.cached_ids)
    fresh = Engine(loaded.model, 4096)
    fresh.runner.forward(cached, 0)
    for layer in range(len(spec.runner.layers)):
        got, want = spec.runner.cache.k[layer][:, :, :len(cached)], fresh.runner.cache.k[layer][:, :, :len(cached)]
        assert torch.allclose(got, want, atol=1e-4), f"layer {layer}"


def test_a_keystroke_typed_along_the_suggestion_is_verified_by_the_prefill_pass(loaded: Any,
                                                                               tok: CodeLlamaTokenizer) -> None:
    plain, spec = engines(loaded)
    ids = tok.spm_ids(TEXT[:1500], TEXT[1500:])
    first = spec.generate(GenerationRequest(prompt_ids=ids, max_new_tokens=16, stop_ids=set()))
    assert first.ids == plain.generate(GenerationRequest(prompt_ids=ids, max_new_tokens=16, stop_ids=set())).ids
    typed = [*ids, first.ids[0]]  # the user typed the suggestion's first token: one new prompt token
    req = GenerationRequest(prompt_ids=typed, max_new_tokens=12, stop_ids=set())
    a, b = plain.generate(req), spec.generate(req)
    assert b.ids == a.ids == first.ids[1:13]
    assert b.prefilled_tokens == 1
    # the previous suggestion's next tokens rode along with the new token and were kept: a whole draft in the
    # prefill pass (longer than a draft from the prompt may be), so far fewer passes than tokens
    assert spec.draft_tokens > DRAFT_TOKENS and b.timings["prefill_accepted"] == spec.draft_tokens
    assert b.timings["forwards"] <= len(b.ids) - spec.draft_tokens


def test_rules_fire_at_the_same_token_as_plain_decoding(loaded: Any, tok: CodeLlamaTokenizer) -> None:
    plain, spec = engines(loaded)
    prompt = build_prompt(tok, TEXT[:1500], TEXT[1500:], "spm")
    free = plain.generate(request(tok, prompt, n=24, newline=False)).ids
    for at in (1, 2, 5, 9):  # a stop rule firing inside an accepted draft
        req = request(tok, prompt, n=24, newline=False)
        req.should_stop = lambda ids, at=at: len(ids) >= at
        a, b = plain.generate(req), spec.generate(req)
        assert b.ids == a.ids == free[:at] and b.stop == a.stop == "rule"
    stop_id = free[6]  # a stop id the answer reaches
    req = request(tok, prompt, n=24, newline=False)
    req.stop_ids = {stop_id}
    a, b = plain.generate(req), spec.generate(req)
    assert b.ids == a.ids == free[:free.index(stop_id)] and b.stop == a.stop == "eos"
    for n in (1, 3, 7):
        a, b = plain.generate(request(tok, prompt, n=n, newline=False)), spec.generate(
            request(tok, prompt, n=n, newline=False))
        assert b.ids == a.ids and len(b.ids) == n and b.stop == "max_tokens"


def test_exclude_first_and_healing_equal_plain(loaded: Any, tok: CodeLlamaTokenizer) -> None:
    plain, spec = engines(loaded)
    mid = TEXT.index("return", len(TEXT) // 3) + 3  # the cursor inside a word: token healing constrains
    prompt = build_prompt(tok, TEXT[:mid], TEXT[mid:], "spm")
    assert prompt.healed
    a, b = plain.generate(request(tok, prompt, newline=False)), spec.generate(request(tok, prompt, newline=False))
    assert b.ids == a.ids
    exclude = frozenset({a.ids[0]})
    a2 = plain.generate(request(tok, prompt, newline=False, exclude_first=exclude))
    b2 = spec.generate(request(tok, prompt, newline=False, exclude_first=exclude))
    assert b2.ids == a2.ids and b2.ids[0] != a.ids[0]


def test_cancel_and_time_budget_stop_within_the_block(loaded: Any, tok: CodeLlamaTokenizer) -> None:
    plain, spec = engines(loaded)
    prompt = build_prompt(tok, TEXT[:2000], TEXT[2000:], "spm")
    for engine in (plain, spec):
        cancel = threading.Event()

        def on_token(ids: list[int], cancel: threading.Event = cancel) -> None:
            if len(ids) == 3:
                cancel.set()  # the user typed: stop at the next check

        r = engine.generate(request(tok, prompt, newline=False, cancel=cancel, on_token=on_token))
        assert r.stop == "cancelled" and len(r.ids) == 3
        late = engine.generate(request(tok, prompt, newline=False, deadline=time.monotonic() - 1))
        assert late.stop == "time" and len(late.ids) == 1
    # after a cancelled speculative request the cache still gives plain decoding's answer
    assert spec.generate(request(tok, prompt)).ids == plain.generate(request(tok, prompt)).ids


def test_end_of_the_context_window_equals_plain(loaded: Any, tok: CodeLlamaTokenizer) -> None:
    context = 300
    prompt_ids = tok.spm_ids(TEXT[:2000], "")[-260:]
    plain, spec = engines(loaded, context)
    req = GenerationRequest(prompt_ids=prompt_ids, max_new_tokens=100, stop_ids=set())
    a, b = plain.generate(req), spec.generate(req)
    assert b.ids == a.ids and b.stop == a.stop == "context"


def test_static_verify_step_equals_plain_eager(loaded: Any, tok: CodeLlamaTokenizer) -> None:
    """The fixed-shape k+1-row verify step (what CUDA graphs replay on a GPU) runs eagerly on CPU here."""
    plain = Engine(loaded.model, 4096, vocab_limit=tok.vocab_size)
    static = Engine(loaded.model, 4096, vocab_limit=tok.vocab_size, decode="static", speculative=True)
    assert static.static is not None and static.static.verify_rows == static.draft_tokens + 1
    drafted = 0
    for cut in cuts(TEXT, 4):
        prompt = build_prompt(tok, TEXT[:cut], TEXT[cut:], "spm")
        for newline in (True, False):
            a, b = plain.generate(request(tok, prompt, newline=newline)), static.generate(
                request(tok, prompt, newline=newline))
            assert b.ids == a.ids, f"cut {cut}"
            drafted += int(b.timings["drafted"])
    assert drafted > 0
    # a short draft is padded to the fixed shape: its rows equal the eager forward's
    ids = tok.spm_ids(TEXT[:900], "")
    static.reset()
    static.runner.forward(ids[:-3], 0)
    got = static.static.forward_all(ids[-3:], len(ids) - 3)
    plain.runner.forward(ids[:-3], 0)
    want = plain.runner.forward_all(ids[-3:], len(ids) - 3)
    assert got.shape == want.shape == (3, loaded.model.config.vocab_size)
    assert torch.allclose(got, want, atol=1e-4)


def test_a_keystrokes_draft_stays_within_the_static_verify_step(loaded: Any, tok: CodeLlamaTokenizer,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """On the static path (CUDA graphs on a GPU) the keystroke's prefill pass with its draft must be the fixed verify
    step, never an eager forward of more rows: the graph replay is the point of that path."""
    plain = Engine(loaded.model, 4096, vocab_limit=tok.vocab_size)
    static = Engine(loaded.model, 4096, vocab_limit=tok.vocab_size, decode="static", speculative=True)
    assert static.static is not None
    ids = tok.spm_ids(TEXT[:1500], TEXT[1500:])
    first = static.generate(GenerationRequest(prompt_ids=ids, max_new_tokens=16, stop_ids=set()))
    calls: list[int] = []
    real = static.runner.forward_all
    monkeypatch.setattr(static.runner, "forward_all", lambda ids, start: calls.append(len(ids)) or real(ids, start))
    static.cached_ids = list(ids)  # as if the answer had not been kept: the keystroke brings 2 new tokens
    req = GenerationRequest(prompt_ids=[*ids, *first.ids[:2]], max_new_tokens=12, stop_ids=set())
    b = static.generate(req)
    assert b.ids == plain.generate(req).ids == first.ids[2:14]
    assert b.prefilled_tokens == 2
    assert b.timings["prefill_accepted"] == static.static.verify_rows - 2  # 2 new tokens + a 3-token draft
    assert calls == []  # no eager multi-row forward: every pass was the one-row or the verify step
