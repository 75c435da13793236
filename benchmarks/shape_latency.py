"""CPU latency of candidate embedded-model shapes, before spending GPU time training one.

The embedded model must answer a keystroke within 60 ms p50 on a 2-core laptop CPU, and its weights must stay
under 12 MB.  This times the engine's per-keystroke work for random-weight models of other shapes, against
the shipped model, in one process: a ~1,200-token prompt prefilled once, then per keystroke one new prompt
token and ``--new-tokens`` decoded tokens (the typing replay's model calls average about 13).  Random weights
do not change the arithmetic, only what is said.

    python -m benchmarks.shape_latency [--keystrokes 30] [--new-tokens 13] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from lsp_server.stats import nearest_rank
from model_backend.embedded import WEIGHTS_DIR
from model_backend.engine import Engine
from model_backend.generation import GenerationRequest

# (name, overrides of the shipped config); parameters and int8 bytes are computed, not assumed.
CANDIDATES: list[tuple[str, dict[str, Any]]] = [
    ("shipped shape, random weights", {}),
    ("wider: 320 x 8 layers, FFN 864, 5 heads / 1 KV", {"hidden_size": 320, "intermediate_size": 864,
                                                         "num_hidden_layers": 8, "num_attention_heads": 5,
                                                         "num_key_value_heads": 1}),
    ("deeper: 256 x 14 layers", {"num_hidden_layers": 14}),
]


def shipped_model() -> LlamaForCausalLM:
    return LlamaForCausalLM.from_pretrained(WEIGHTS_DIR, dtype=torch.float16).eval()


def random_model(overrides: dict[str, Any]) -> LlamaForCausalLM:
    base = LlamaConfig.from_pretrained(WEIGHTS_DIR)
    config = LlamaConfig(**{**base.to_dict(), **overrides})
    torch.manual_seed(0)
    model: Any = LlamaForCausalLM(config)
    return model.half().eval()


def time_keystrokes(model: LlamaForCausalLM, keystrokes: int, new_tokens: int) -> dict[str, Any]:
    """Per-keystroke ms: extend the cached prompt by one token, decode ``new_tokens`` (no stops)."""
    params = sum(p.numel() for p in model.parameters())  # before the engine adds its fused copies
    vocab = int(model.config.vocab_size)
    gen = torch.Generator().manual_seed(1)
    prompt = torch.randint(3, vocab, (1200,), generator=gen).tolist()
    engine = Engine(model, 4096)
    engine.generate(GenerationRequest(prompt_ids=prompt, max_new_tokens=1, stop_ids=set()))  # the file opens
    times = []
    for _ in range(keystrokes):
        prompt = [*prompt, int(torch.randint(3, vocab, (1,), generator=gen))]
        t0 = time.perf_counter()
        engine.generate(GenerationRequest(prompt_ids=prompt, max_new_tokens=new_tokens, stop_ids=set()))
        times.append((time.perf_counter() - t0) * 1e3)
    return {"parameters": params, "fp16_mb": round(params * 2 / 1e6, 2), "int8_mb": round(params / 1e6, 2),
            "keystroke_ms_p50": round(nearest_rank(times, 50), 1),
            "keystroke_ms_p90": round(nearest_rank(times, 90), 1)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--keystrokes", type=int, default=30)
    parser.add_argument("--new-tokens", type=int, default=13)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"shipped model": time_keystrokes(shipped_model(), args.keystrokes, args.new_tokens)}
    for name, overrides in CANDIDATES:
        results[name] = time_keystrokes(random_model(overrides), args.keystrokes, args.new_tokens)
    report = {"benchmark": "shape_latency", "torch_threads": torch.get_num_threads(), "keystrokes": args.keystrokes,
              "new_tokens": args.new_tokens, "results": results}
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()
