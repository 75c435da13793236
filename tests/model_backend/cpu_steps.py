"""What the CPU decode-step tests share (``test_compiled_step.py``, ``test_native_step.py``): an engine of a given
decode mode over the embedded model, and the requests of someone typing real code from this repository."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from lsp_server.completion.prompts import build_prompt
from model_backend.engine import Engine
from model_backend.generation import GenerationRequest
from model_backend.tokenization import CodeLlamaTokenizer

TEXT = (Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "inventory.py").read_text()


def engine(loaded: Any, decode: str, warm: bool, **kw: Any) -> Engine:
    """An engine over ``loaded``'s model; not ``warm``, a compiled or native mode decodes eagerly over the same
    half-precision cache (the reference its step is compared with)."""
    e = Engine(loaded.model, 4096, vocab_limit=loaded.tokenizer.vocab_size, decode=decode, **kw)
    if warm:
        e.warm_up(loaded.tokenizer.bos_id)
    return e


def keystrokes(tok: CodeLlamaTokenizer, n: int = 8, newline: bool = True) -> list[GenerationRequest]:
    """One request per keystroke while typing the next line of a function, with the server's single-line rule."""
    cut = TEXT.index("def ", len(TEXT) // 2)

    def stop(ids: list[int]) -> bool:
        return newline and "\n" in tok.decode_middle(ids).lstrip("\n")

    return [GenerationRequest(prompt_ids=build_prompt(tok, TEXT[:cut + k], TEXT[cut + k:], "spm").ids,
                              max_new_tokens=16, stop_ids=tok.stop_ids(), should_stop=stop)
            for k in range(0, 3 * n, 3)]


def assert_decodes_as_eager(stepped: Engine, eager: Engine, tok: CodeLlamaTokenizer) -> None:
    """Keystroke after keystroke, with the cache reused: ``stepped`` gives ``eager``'s tokens and stop reasons,
    log-probabilities within 2e-2, and writes the keys/values the eager forward writes for the same ids."""
    stepped.reset()
    steps = 0
    for i, req in enumerate(keystrokes(tok) + keystrokes(tok, 4, newline=False)):
        a, b = eager.generate(req), stepped.generate(req)
        assert b.ids == a.ids and b.stop == a.stop
        assert b.token_logprobs == pytest.approx(a.token_logprobs, abs=2e-2)
        assert b.reused_tokens == a.reused_tokens and (i == 0 or b.reused_tokens > 0)  # reused keystroke to keystroke
        steps += len(b.ids)
    assert steps > 40
    cached = list(stepped.cached_ids)
    assert cached == eager.cached_ids
    ours, theirs = stepped.runner.cache, eager.runner.cache
    for layer in range(len(stepped.runner.layers)):
        for got, want in ((ours.k[layer], theirs.k[layer]), (ours.v[layer], theirs.v[layer])):
            assert torch.allclose(got[:, :, :len(cached)].float(), want[:, :, :len(cached)].float(), atol=2e-2), \
                f"layer {layer}"
