"""Where the CPU decode step's time goes, and what the alternatives cost: A/B variants in one process.

    python -m benchmarks.cpu_step [--threads 1 2] [--rows 1 2 3 5 9 17] [--compile] [--json OUT]
    python -m benchmarks.cpu_step --decode-steps [--json OUT]

All variants run the embedded model's ``LlamaRunner`` on the 1,550-token SPM prompt of ``benchmarks/data/
inventory.py`` (cache filled), one step at position ~1,550, interleaved round after round so a busy machine slows
them alike; reported is the median over rounds of the mean step time (ms):

- ``weights``: fp16 weights (the shipped file; products in fp16, activations fp32) vs the same weights widened to
  fp32 at load;
- ``kv``: the KV cache in fp32 (shipped) vs fp16 widened to fp32 for each attention call;
- ``threads``: torch threads;
- ``rows``: a verify pass of R rows (speculative decoding's cost per pass, by draft length + 1);
- ``--compile``: ``torch.compile`` (inductor, dynamic shapes) of the eager forward: compile time and step time.

``--decode-steps`` instead times the engine's three CPU decode steps over one runner and its half-precision cache
(eager, ``compiled_step.py``, ``native_step.py``), fp16 and fp32 weights, with 20 to 3,000 cached tokens.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from model_backend import llama
from model_backend.compiled_step import CompiledStep
from model_backend.loading import LoadSpec, load
from model_backend.native_step import NativeStep

TEXT = (Path(__file__).parent / "data" / "inventory.py").read_text()


class HalfCache(llama.KVCache):
    """Keys/values stored in fp16 (half the bytes), widened to fp32 for attention."""

    def update(self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = super().update(layer, start, k, v)
        return keys.float(), values.float()


def runner(dtype: str, half_kv: bool = False) -> tuple[llama.LlamaRunner, list[int]]:
    loaded = load(LoadSpec(dtype=dtype))
    ids = loaded.tokenizer.spm_ids(TEXT, "")
    r = llama.LlamaRunner(loaded.model, 4096)
    if half_kv:
        r.cache = HalfCache(len(r.layers), r.n_kv, r.head_dim, r.max_len, torch.float16, r.device)
    r.forward(ids, 0)
    return r, ids


def timed(step: Any, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - t0) / n * 1e3


def interleaved(variants: dict[str, Any], rounds: int, n: int) -> dict[str, float]:
    """Median over ``rounds`` of each variant's mean step ms, the variants taking turns within a round."""
    got: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(rounds):
        for name, step in variants.items():
            got[name].append(timed(step, n))
    return {k: round(statistics.median(v), 3) for k, v in got.items()}


def decode_steps(rounds: int, steps: int) -> dict[str, dict[str, float]]:
    """Step ms of eager / compiled / native by weights dtype and cached length, interleaved."""
    out: dict[str, dict[str, float]] = {}
    for dtype in ("float16", "float32"):
        loaded = load(LoadSpec(dtype=dtype))
        r = llama.LlamaRunner(loaded.model, 4096, kv_dtype=torch.float16)
        compiled, native = CompiledStep(r), NativeStep(r)
        if not (compiled.compile() and native.compile()):
            raise SystemExit(f"building a step failed: {compiled.failed or native.failed}")
        r.forward(loaded.tokenizer.spm_ids(TEXT, ""), 0)  # real keys/values for the first ~1,550 positions
        for pos in (20, 500, 1500, 3000):
            variants = {"eager": lambda r=r, pos=pos: r.forward([100], pos),
                        "compiled": lambda c=compiled, pos=pos: c.step(100, pos),
                        "native": lambda n=native, pos=pos: n.step(100, pos)}
            out[f"{dtype}, {pos} cached"] = interleaved(variants, rounds, steps)
            print(dtype, pos, out[f"{dtype}, {pos} cached"], flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 2, 3, 5, 9, 17])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=30, help="steps per variant per round")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (minutes to compile)")
    parser.add_argument("--decode-steps", action="store_true", help="only the engine's CPU decode steps")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    report: dict[str, Any] = {"benchmark": "cpu_step", "machine": {"platform": platform.platform(),
                                                                   "torch": torch.__version__}}
    if args.decode_steps:
        torch.set_num_threads(max(args.threads))
        report["decode_step_ms"] = decode_steps(args.rounds, args.steps)
        text = json.dumps(report, indent=2)
        print(text)
        if args.json:
            args.json.write_text(text + "\n")
        return
    f16, ids = runner("float16")
    f32, _ = runner("float32")
    half_kv, _ = runner("float16", half_kv=True)
    pos = len(ids)

    def one(r: llama.LlamaRunner) -> Any:
        return lambda: r.forward([100], pos)

    by_threads = {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        by_threads[str(threads)] = interleaved(
            {"fp16 weights, fp32 KV (shipped)": one(f16), "fp32 weights": one(f32), "fp16 KV widened": one(half_kv)},
            args.rounds, args.steps)
        print(threads, by_threads[str(threads)], flush=True)
    report["step_ms_by_threads"] = by_threads
    torch.set_num_threads(max(args.threads))
    report["verify_pass_ms_by_rows"] = interleaved(
        {str(rows): (lambda rows=rows: f16.forward_all(list(range(100, 100 + rows)), pos)) for rows in args.rows},
        args.rounds, args.steps)
    print("rows", report["verify_pass_ms_by_rows"], flush=True)
    if args.compile:
        compiled = torch.compile(f16._hidden, dynamic=True)
        t0 = time.perf_counter()
        with torch.inference_mode():
            f16.logits(compiled([100], pos))
        report["compile_s"] = round(time.perf_counter() - t0, 1)
        with torch.inference_mode():
            same = torch.equal(f16.logits(compiled([100], pos)), f16.forward([100], pos))

        def compiled_step() -> Any:
            with torch.inference_mode():
                return f16.logits(compiled([100], pos))

        report["compiled"] = {"same_logits": same, **interleaved(
            {"eager": one(f16), "compiled": compiled_step}, args.rounds, args.steps)}
        print("compile", report["compile_s"], report["compiled"], flush=True)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
