"""The static (CUDA-graph friendly) decode step gives the eager engine's greedy output, token for token.

On CPU the static step runs eagerly, so this checks the step itself: position and token read from device
tensors, key/value written with ``index_copy_``, attention over a fixed window with a mask from the
position.  Capture and replay need a GPU (``benchmarks/gpu_bench.py``); the fallback when capture fails is
checked here by making it fail.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from model_backend.engine import Engine
from model_backend.generation import GenerationRequest, GenerationResult
from model_backend.loading import LoadSpec, load
from model_backend.memory import allocated_kv_bytes, kv_bytes_per_token, kv_cache_bytes
from model_backend.static_decode import StaticDecoder, attention_buckets, resolve_mode
from model_backend.tokenization import CodeLlamaTokenizer

CODE = '''import json
from dataclasses import dataclass


@dataclass
class Item:
    name: str
    stock: int
    price: float


def load_items(path):
    with open(path) as f:
        return [Item(**row) for row in json.load(f)]


def total_value(items):
    return sum(item.stock * item.price for item in items)
'''
SUFFIX = "\n\nif __name__ == '__main__':\n    print(total_value(load_items('items.json')))\n"
TYPED = "\n\ndef restock(items, threshold=5):\n    low = [item.name for item in items if item.stock < threshold]\n"


@pytest.fixture(scope="module")
def embedded() -> Any:
    return load(LoadSpec()).model  # fp16 weights, fp32 activations on CPU; 4 heads over 2 KV heads (GQA)


@pytest.fixture(scope="module")
def gqa_model() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=512, hidden_size=128, num_hidden_layers=2, num_attention_heads=8,
                         num_key_value_heads=2, intermediate_size=256, max_position_embeddings=2048,
                         rope_theta=1e6, tie_word_embeddings=False)
    return LlamaForCausalLM(config).eval()


def run(engine: Engine, prompt: list[int], n: int = 16) -> GenerationResult:
    return engine.generate(GenerationRequest(prompt_ids=prompt, max_new_tokens=n, stop_ids=set()))


def test_modes() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_mode("auto", cpu) == "native" and resolve_mode("auto", cuda) == "static"
    assert resolve_mode("static", cpu) == "static" and resolve_mode("eager", cuda) == "eager"
    assert resolve_mode("compiled", cpu) == "compiled" and resolve_mode("compiled", cuda) == "eager"
    assert resolve_mode("native", cpu) == "native" and resolve_mode("native", cuda) == "eager"
    with pytest.raises(ValueError, match="decode must be one of"):
        resolve_mode("graphs", cpu)
    assert attention_buckets(4096) == [256, 512, 1024, 2048, 4096]
    assert attention_buckets(300) == [256, 300] and attention_buckets(200) == [200]


def test_the_bare_engine_decodes_eagerly_and_static_runs_eagerly_on_cpu(embedded: Any) -> None:
    engine = Engine(embedded, 512)
    assert engine.decode == "eager" and engine.static is None
    static = Engine(embedded, 512, decode="static")
    assert static.static is not None and not static.static.use_graphs  # no CUDA: the step runs eagerly
    with pytest.raises(ValueError, match="CUDA"):
        StaticDecoder(static.runner, graphs=True)


def test_step_logits_equal_the_eager_forward_across_windows(gqa_model: LlamaForCausalLM) -> None:
    torch.manual_seed(1)
    ids = torch.randint(3, 512, (600,)).tolist()
    eager, static = Engine(gqa_model, 1024, decode="eager"), Engine(gqa_model, 1024, decode="static")
    assert static.static is not None and static.static.buckets == [256, 512, 1024]
    eager.runner.forward(ids[:250], 0)
    static.runner.forward(ids[:250], 0)
    for pos in range(250, 600):  # crosses the 256- and 512-key windows
        expected = eager.runner.forward([ids[pos]], pos)
        got = static.static.step(ids[pos], pos)
        assert torch.allclose(got, expected, atol=1e-4), f"position {pos}"
    with torch.no_grad():
        reference = gqa_model(torch.tensor([ids])).logits[0, -1]
    assert torch.allclose(got, reference, atol=1e-4)


def test_gqa_greedy_output_equals_eager(gqa_model: LlamaForCausalLM) -> None:
    torch.manual_seed(2)
    eager, static = Engine(gqa_model, 1024, decode="eager"), Engine(gqa_model, 1024, decode="static")
    for n in (1, 5, 255, 300):
        prompt = torch.randint(3, 512, (n,)).tolist()
        assert run(static, prompt, 24).ids == run(eager, prompt, 24).ids


def test_cold_prompts_equal_eager(embedded: Any, tok: CodeLlamaTokenizer) -> None:
    eager = Engine(embedded, 4096, reuse_cache=False, decode="eager")
    static = Engine(embedded, 4096, reuse_cache=False, decode="static")
    lines = CODE.splitlines(keepends=True)
    for cut in range(2, len(lines), 3):
        prompt = tok.spm_ids("".join(lines[:cut]), "".join(lines[cut:]))
        a, b = run(static, prompt, 24), run(eager, prompt, 24)
        assert a.ids == b.ids, f"cold prompt cut at line {cut}"


def test_keystrokes_with_reuse_equal_eager_with_reuse(embedded: Any, tok: CodeLlamaTokenizer) -> None:
    # Reuse = keep the first N positions, overwrite the rest.  The reference is the eager engine fed the same
    # keystrokes: a prompt prefilled in pieces and one prefilled whole may differ in a near-tie (both paths do).
    static, eager = Engine(embedded, 4096, decode="static"), Engine(embedded, 4096, decode="eager")
    texts = [CODE + TYPED[:k] for k in range(1, len(TYPED) + 1, 5)]
    texts += [CODE + TYPED[:20], CODE.replace("stock: int", "stock: float") + TYPED[:20]]  # backspace, edit above
    reused = 0
    for text in texts:
        prompt = tok.spm_ids(text, SUFFIX)
        a, b = run(static, prompt, 12), run(eager, prompt, 12)
        assert a.ids == b.ids, f"diverged after {text[-30:]!r}"
        assert a.reused_tokens == b.reused_tokens
        reused += a.reused_tokens
    assert reused > 0.9 * sum(len(tok.spm_ids(t, SUFFIX)) for t in texts[1:-2])


def test_end_of_context_window_equals_eager(embedded: Any, tok: CodeLlamaTokenizer) -> None:
    context = 300  # windows 256 and 300: decoding crosses from one to the other and hits the end
    prompt = tok.spm_ids((CODE * 3)[:900], "")[:250]
    static, eager = Engine(embedded, context, decode="static"), Engine(embedded, context, decode="eager")
    a, b = run(static, prompt, 100), run(eager, prompt, 100)
    assert a.ids == b.ids and a.stop == b.stop == "context"
    assert len(prompt) + len(a.ids) == context  # the last position written is context - 2, plus one unfed token
    longer = [*prompt, *a.ids[:30], 7]  # reuse near the end of the window, a new token after it
    c, d = run(static, longer, 100), run(eager, longer, 100)
    assert c.ids == d.ids and c.reused_tokens == d.reused_tokens == len(longer) - 1 and c.stop == "context"


def test_warm_up_leaves_a_clean_cache(embedded: Any, tok: CodeLlamaTokenizer) -> None:
    engine = Engine(embedded, 1024, decode="static")
    engine.warm_up(tok.bos_id)
    assert engine.cached_ids == []
    prompt = tok.spm_ids(CODE, SUFFIX)
    assert run(engine, prompt).ids == run(Engine(embedded, 1024, decode="eager"), prompt).ids


def test_a_failed_capture_falls_back_to_eager_with_a_warning(gqa_model: LlamaForCausalLM,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    engine = Engine(gqa_model, 512, decode="static")
    decoder = engine.static
    assert decoder is not None
    decoder.use_graphs, decoder.tail_steps = True, 4  # as on CUDA; capture will fail before touching CUDA

    def broken(length: int, rows: int = 1) -> torch.Tensor:
        raise RuntimeError("capture not supported here")

    decoder._warm_up = broken  # type: ignore[method-assign]
    prompt = torch.randint(3, 512, (40,)).tolist()
    with caplog.at_level(logging.WARNING, logger="model_backend.static_decode"):
        out = run(engine, prompt, 10).ids
    assert out == run(Engine(gqa_model, 512, decode="eager"), prompt, 10).ids
    assert not decoder.use_graphs and decoder.tail_steps == 1 and "capture not supported" in (decoder.fallback or "")
    assert any("decoding without graphs" in r.getMessage() for r in caplog.records)


def test_kv_cache_bytes_and_the_context_window_bound(embedded: Any) -> None:
    codellama_7b = LlamaConfig(vocab_size=32016, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                               num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=16384)
    assert kv_bytes_per_token(codellama_7b, torch.float16) == 512 * 1024  # CODELLAMA.md: 512 KiB per token
    assert kv_cache_bytes(codellama_7b, 2048, torch.bfloat16) == 2**30
    assert kv_cache_bytes(codellama_7b, 100_000) == kv_cache_bytes(codellama_7b, 16384) == 8 * 2**30
    for context in (512, 4096, 10_000):  # the buffer is the window (capped by the model's positions), allocated once
        engine = Engine(embedded, context, decode="static")
        runner = engine.runner
        assert allocated_kv_bytes(engine) == kv_cache_bytes(embedded.config, context, runner.act_dtype)
        before = allocated_kv_bytes(engine)
        run(engine, list(range(3, 200)), 8)
        assert allocated_kv_bytes(engine) == before


def test_the_decode_setting_reaches_the_engine_and_load_reports_the_warm_up() -> None:
    from lsp_server.completion.core import CompletionCore
    from lsp_server.settings import Settings, needs_reload, parse_settings

    settings, problems = parse_settings({"decode": "static"})
    assert problems == [] and settings.decode == "static" and needs_reload(Settings(), settings)
    _, problems = parse_settings({"decode": "graphs"})
    assert len(problems) == 1 and "auto, eager, static, compiled" in problems[0]
    core = CompletionCore(settings)
    steps: list[tuple[str, int]] = []
    core.load(lambda message, percent: steps.append((message, percent)))
    assert core.engine is not None and core.engine.decode == "static" and core.engine.cached_ids == []
    assert ("warming up", 90) in steps  # on CUDA: "warming up (capturing CUDA graphs)"
    assert CompletionCore(Settings()).settings.decode == "auto"
