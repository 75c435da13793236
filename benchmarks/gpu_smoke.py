"""A short check of the CUDA paths of the engine: bf16 and 4-bit NF4 through the project's own loader.

Not the GPU benchmark (that is ``gpu_bench.py``'s job, a later issue): this only shows that the CUDA code
paths load, decode, reuse the cache, and how fast the decode loop is per token, in about a minute.

1. The embedded model on CUDA (bf16): a 30-keystroke typing replay, cached vs cold engine, through the
   same ``CompletionCore`` the server uses; per-token decode time.
2. A randomly initialised Llama (hidden 1024, 8 layers, our tokenizer) saved to disk, loaded with
   ``quantization: nf4``: the projections must be bitsandbytes 4-bit layers; greedy decode, cached vs cold.

    python -m benchmarks.gpu_smoke --out results.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from lsp_server.completion.core import CompletionCore
from lsp_server.completion.documents import Document
from lsp_server.settings import Settings
from model_backend.embedded import WEIGHTS_DIR
from model_backend.engine import Engine
from model_backend.generation import GenerationRequest
from model_backend.loading import LoadSpec, load

CONTEXT = (Path(__file__).parent / "data" / "inventory.py").read_text()
TYPED = "\n\ndef restock_report(items, threshold=5):\n    low = [item.name for"


def typing_replay(settings: Settings) -> dict[str, Any]:
    """Cached vs cold over a short typing replay; both engines see the same prompts."""
    cached, cold = CompletionCore(settings), CompletionCore(Settings(**{**settings.__dict__, "cache_reuse": False}))
    cached.load()
    cold.load()
    same, decode_ms, tokens, lat = 0, 0.0, 0, []
    text = CONTEXT
    for i, ch in enumerate(TYPED):
        text += ch
        doc = Document("file:///gpu.py", "python", i, text)
        t0 = time.perf_counter()
        a = cached.generate(cached.prepare(doc, len(text)))
        torch.cuda.synchronize()
        lat.append((time.perf_counter() - t0) * 1e3)
        b = cold.generate(cold.prepare(doc, len(text)))
        same += a.result.ids == b.result.ids
        decode_ms += a.result.decode_ms
        tokens += len(a.result.ids)
    lat.sort()
    return {"keystrokes": len(TYPED), "identical_outputs": same, "p50_ms": round(lat[len(lat) // 2], 2),
            "decode_ms_per_token": round(decode_ms / max(tokens, 1), 3),
            "dtype": str(cached.loaded.dtype) if cached.loaded else None}


def nf4_check(folder: Path) -> dict[str, Any]:
    """A random Llama saved to ``folder`` and loaded in NF4 through our loader; decode speed and cache check."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=4096, hidden_size=1024, intermediate_size=2816, num_hidden_layers=8,
                         num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=4096,
                         rope_parameters={"rope_type": "default", "rope_theta": 1e6}, bos_token_id=1, eos_token_id=2)
    model: Any = LlamaForCausalLM(config)
    model.to(torch.bfloat16).save_pretrained(folder)
    shutil.copy(WEIGHTS_DIR / "tokenizer.model", folder / "tokenizer.model")
    loaded = load(LoadSpec(model=str(folder), quantization="nf4", device="cuda"))
    kind = type(loaded.model.model.layers[0].self_attn.q_proj).__name__
    prompt = torch.randint(7, 4096, (1500,)).tolist()
    req = GenerationRequest(prompt_ids=prompt, max_new_tokens=64, stop_ids=set())
    engine, cold = Engine(loaded.model, 4096), Engine(loaded.model, 4096, reuse_cache=False)
    engine.generate(req)  # warm-up
    first = engine.generate(GenerationRequest(prompt_ids=[*prompt, 9], max_new_tokens=64, stop_ids=set()))
    reference = cold.generate(GenerationRequest(prompt_ids=[*prompt, 9], max_new_tokens=64, stop_ids=set()))
    return {"projection_type": kind, "decode_ms_per_token": round(first.decode_ms / len(first.ids), 3),
            "cold_prefill_ms_1501_tokens": round(reference.prefill_ms, 1), "reused_tokens": first.reused_tokens,
            "cached_equals_cold": first.ids == reference.ids,
            "gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    report: dict[str, Any] = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    sections = {"embedded_bf16": lambda: typing_replay(Settings(device="cuda")),
                "random_1024x8_nf4": lambda: nf4_check(Path(tempfile.mkdtemp()) / "m")}
    for name, run in sections.items():
        t0 = time.perf_counter()
        try:
            report[name] = run()
        except Exception:  # record and go on to the next section
            report[name] = {"error": traceback.format_exc()}
        report[name]["seconds"] = round(time.perf_counter() - t0, 1)
        print(name, json.dumps(report[name]), flush=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
