"""The engine: our forward equals Hugging Face's, the cached path equals the cold path, stops work."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from model_backend.engine import Engine
from model_backend.generation import EngineError, GenerationRequest


@pytest.fixture(scope="module")
def model() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=512, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=128, max_position_embeddings=1024,
                         rope_theta=1e6, tie_word_embeddings=True)
    return LlamaForCausalLM(config).eval()


def greedy(engine: Engine, prompt: list[int], n: int = 12, **kw: object) -> list[int]:
    return engine.generate(GenerationRequest(prompt_ids=prompt, max_new_tokens=n, stop_ids=set(), **kw)).ids


def test_forward_matches_hugging_face(model: LlamaForCausalLM) -> None:
    ids = torch.randint(3, 512, (200,)).tolist()
    with torch.no_grad():
        expected = model(torch.tensor([ids])).logits[0, -1]
    engine = Engine(model, 1024)
    assert torch.allclose(engine.runner.forward(ids, 0), expected, atol=1e-4)
    engine.runner.forward(ids[:150], 0)  # the same prompt in two pieces, through the cache
    assert torch.allclose(engine.runner.forward(ids[150:], 150), expected, atol=1e-4)


def test_cached_path_gives_the_cold_path_output_while_typing(model: LlamaForCausalLM) -> None:
    torch.manual_seed(1)
    base = torch.randint(3, 512, (300,)).tolist()
    cached, cold = Engine(model, 1024), Engine(model, 1024, reuse_cache=False)
    prefilled = []
    for k in range(1, 15):
        prompt = base + list(range(100, 100 + k))  # "typing" appends one token per keystroke
        req = GenerationRequest(prompt_ids=prompt, max_new_tokens=10, stop_ids=set())
        a, b = cached.generate(req), cold.generate(req)
        assert a.ids == b.ids
        prefilled.append(a.prefilled_tokens)
        assert b.prefilled_tokens == len(prompt)
    assert max(prefilled[1:]) <= 2  # only the new token (or the one before it) is computed


def test_edit_in_the_middle_reuses_the_common_prefix(model: LlamaForCausalLM) -> None:
    prompt = torch.randint(3, 512, (100,)).tolist()
    engine = Engine(model, 1024)
    greedy(engine, prompt)
    edited = [*prompt[:60], 7, *prompt[61:]]
    result = engine.generate(GenerationRequest(prompt_ids=edited, max_new_tokens=5, stop_ids=set()))
    assert result.reused_tokens == 60
    assert result.ids == greedy(Engine(model, 1024), edited, 5)


def test_cancel_stops_within_one_token(model: LlamaForCausalLM) -> None:
    cancel = threading.Event()
    cancel.set()
    result = Engine(model, 1024).generate(GenerationRequest(prompt_ids=[1, 2, 3], max_new_tokens=50,
                                                            stop_ids=set(), cancel=cancel))
    assert result.stop == "cancelled" and len(result.ids) == 1


def test_time_budget_stops_decoding(model: LlamaForCausalLM) -> None:
    result = Engine(model, 1024).generate(GenerationRequest(prompt_ids=[1, 2, 3], max_new_tokens=50,
                                                            stop_ids=set(), deadline=time.monotonic() - 1))
    assert result.stop == "time" and len(result.ids) == 1


def test_an_invoked_request_decodes_after_a_prefill_that_used_up_its_budget(model: LlamaForCausalLM) -> None:
    """The deadline passed before decoding began (a long prefill, a wait): an invoked request still gets its
    decode budget counted from the end of the prefill, so it decodes a real answer, not one token."""
    req = GenerationRequest(prompt_ids=[1, 2, 3], max_new_tokens=20, stop_ids=set(), deadline=time.monotonic() - 1,
                            decode_budget_s=60.0)
    result = Engine(model, 1024).generate(req)
    assert result.stop == "max_tokens" and len(result.ids) == 20


def test_stop_ids_and_rules(model: LlamaForCausalLM) -> None:
    engine = Engine(model, 1024)
    free = greedy(engine, [1, 5, 9], 8)
    stopped = engine.generate(GenerationRequest(prompt_ids=[1, 5, 9], max_new_tokens=8, stop_ids={free[3]}))
    assert stopped.stop == "eos" and stopped.ids == free[:free.index(free[3])]
    ruled = engine.generate(GenerationRequest(prompt_ids=[1, 5, 9], max_new_tokens=8, stop_ids=set(),
                                              should_stop=lambda ids: len(ids) == 2))
    assert ruled.stop == "rule" and ruled.ids == free[:2]


def test_constrained_first_token(model: LlamaForCausalLM) -> None:
    engine = Engine(model, 1024)
    free = greedy(engine, [1, 5, 9], 3)
    forced = [t for t in (40, 41) if t != free[0]]
    out = greedy(engine, [1, 5, 9], 3, constrain=lambda ids: forced if not ids else None)
    assert out[0] in forced


def test_prompt_longer_than_context_is_refused(model: LlamaForCausalLM) -> None:
    with pytest.raises(EngineError, match="does not fit"):
        greedy(Engine(model, 64), list(range(3, 100)))


def test_architecture_other_than_llama_is_refused() -> None:
    class Other(torch.nn.Module):
        config = type("C", (), {"model_type": "gpt2"})()

    with pytest.raises(EngineError, match="unsupported architecture"):
        Engine(Other(), 128)


def test_half_weights_on_cpu_keep_float32_activations_and_match(model: LlamaForCausalLM) -> None:
    import copy

    half = copy.deepcopy(model).half()
    engine = Engine(half, 1024)
    assert engine.runner.act_dtype == torch.float32 and engine.runner.cache.k[0].dtype == torch.float32
    ids = torch.randint(3, 512, (120,)).tolist()
    with torch.no_grad():
        expected = copy.deepcopy(half).float()(torch.tensor([ids])).logits[0, -1]
    got = engine.runner.forward(ids[:100], 0)  # prefill path (widened weights)
    got = engine.runner.forward(ids[100:101], 100)  # one-row path (half-precision matmul)
    for i in range(101, 120):
        got = engine.runner.forward([ids[i]], i)
    assert torch.allclose(got, expected, atol=2e-2)
    cold = Engine(half, 1024, reuse_cache=False)
    for k in range(3):
        prompt = ids[:60 + k]
        assert greedy(engine, prompt) == greedy(cold, prompt)


def test_ids_past_the_tokenizer_are_never_picked(model: LlamaForCausalLM) -> None:
    """A checkpoint whose embedding matrix is padded past its tokenizer: the padded ids have no text, so greedy
    decoding picks the best id the tokenizer has."""
    torch.manual_seed(2)
    prompt = torch.randint(3, 300, (40,)).tolist()
    free = greedy(Engine(model, 1024), prompt, n=24)
    limit = max(free)  # a tokenizer this size lacks at least one id the unrestricted model chose
    limited = greedy(Engine(model, 1024, vocab_limit=limit), prompt, n=24)
    assert len(limited) == 24 and all(t < limit for t in limited) and limited != free
    engine = Engine(model, 1024, vocab_limit=limit)  # each choice is the best allowed id at that step
    assert limited[0] == int(torch.argmax(engine.runner.forward(prompt, 0)[:limit]))
    assert greedy(Engine(model, 1024, vocab_limit=512), prompt, n=24) == free  # a limit at the size changes nothing


def test_excluded_first_tokens_give_the_next_best_answer(model: LlamaForCausalLM) -> None:
    """Asking for an alternative: the excluded ids are never the first token, which is the best id left; the
    tokens after it are plain greedy again."""
    torch.manual_seed(3)
    prompt = torch.randint(3, 300, (30,)).tolist()
    engine = Engine(model, 1024)
    first = greedy(engine, prompt)
    logits = engine.runner.forward(prompt, 0)
    ranked = torch.argsort(logits, descending=True).tolist()
    second = greedy(engine, prompt, exclude_first=frozenset({first[0]}))
    assert second[0] == ranked[1] != first[0]
    assert second[1:] == greedy(engine, [*prompt, second[0]], n=11)
    third = greedy(engine, prompt, exclude_first=frozenset({first[0], second[0]}))
    assert third[0] == ranked[2]
    assert greedy(engine, prompt) == first  # nothing left over for the next request


def test_log_probabilities_are_the_models_own(model: LlamaForCausalLM) -> None:
    """Each chosen token's log-probability is the one Hugging Face's model gives it (ranks alternatives); an
    alternative's first token, being second best, is less likely than the greedy one."""
    torch.manual_seed(4)
    prompt = torch.randint(3, 300, (30,)).tolist()
    engine = Engine(model, 1024)
    result = engine.generate(GenerationRequest(prompt_ids=prompt, max_new_tokens=6, stop_ids=set()))
    with torch.no_grad():
        logits = model(torch.tensor([prompt + result.ids])).logits[0]
    expected = [float(torch.log_softmax(logits[len(prompt) - 1 + i], dim=-1)[t]) for i, t in enumerate(result.ids)]
    assert result.token_logprobs == pytest.approx(expected, abs=1e-4)
    assert result.logprob == pytest.approx(sum(expected), abs=1e-3) and result.logprob < 0
    other = engine.generate(GenerationRequest(prompt_ids=prompt, max_new_tokens=6, stop_ids=set(),
                                              exclude_first=frozenset({result.ids[0]})))
    assert other.token_logprobs[0] < result.token_logprobs[0]
