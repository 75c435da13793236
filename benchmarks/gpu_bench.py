"""GPU benchmark: Code Llama 7B's exact shape in 4-bit NF4, plain ``generate()`` against our engine, one process.

1. Builds a checkpoint with random weights and Code Llama 7B's configuration (vocab 32016, hidden 4096, 32
   layers, 32 heads, FFN 11008, rope_theta 1e6, 16,384 positions) directly on the device in bf16, saves it
   (safetensors) to a temporary folder with the embedded model's tokenizer.  The tokenizer has fewer pieces
   than the checkpoint's 32016: ids beyond it are simply never turned into text (nothing here decodes text;
   every run generates a fixed number of tokens, with no stop ids).
2. Loads it through the project's loader (``model_backend.loading.load``): NF4 on CUDA, unquantised on CPU.
3. On the same weights, for a cold ~2,000-token prompt and a typing replay (an SPM prompt over a 2,000-token
   file, 30 keystrokes, 16 new tokens each):
   a. ``model.generate()`` as a user would write it (greedy, ``max_new_tokens`` = ``min_new_tokens``);
   b. our engine with cache reuse off (eager decode);
   d. our engine with cache reuse on, eager decode (to separate what reuse and graphs each bring);
   e. as (c) but the static step run eagerly, no graphs: the same kernels as (c), to show what the graphs
      alone bring;
   c. our engine with everything on: cache reuse and the static decode step, replayed from CUDA graphs;
   s. as (c) plus speculative decoding: drafts from the prompt verified by the fixed-shape k+1-row step (its own
      graphs), reported with tokens per model pass and draft acceptance.  bitsandbytes' batch-1 NF4 GEMV does
      not apply to k+1 rows, so whether it pays on a GPU is what this variant measures;
   u. as (c) with q/k/v and gate/up as separate NF4 products: (c) fuses each group into one 4-bit product
      (``model_backend/nf4_fusion.py``), and ``decode_speedup_c_over_u`` is what that brings.
4. Prints and writes JSON: device, decode tokens/s, cold prefill ms, keystroke→suggestion p50/p95, GPU memory
   (peak allocated; weights + KV cache at 16k context, computed and measured), the p50 speed-up of (c) over
   (a), and whether the variants' greedy outputs are equal.  On CPU in float32 all of them are.  On CUDA in
   bf16 they part after a few tokens: random weights give nearly flat logits (about one step in four is a
   near-tie) and the eager step is not even bitwise repeatable there (the same inputs twice gave different
   logits in 19 of 96 steps on an H200).  So (c) also runs ``step_agreement``: teacher-forced, the replayed
   step, the eager static step and the eager one-token forward at the same inputs, counting greedy choices
   that differ and whether each was a near-tie.

    python -m benchmarks.gpu_bench --out results.json [--device cuda|cpu] [--smoke]
    python -m benchmarks.gpu_bench --checkpoint-only DIR [--smoke]   # only the checkpoint

``--smoke`` is a tiny configuration (hidden 256, 4 layers, vocab 32016; 200-token prompt, 5 keystrokes, 8 new
tokens) that runs end to end on a CPU in seconds, for the test suite.  NF4 needs ``pip install bitsandbytes``
(the ``gpu`` extra).  The JSON is rewritten after every phase, so a run cut short still leaves its results.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import importlib.util
import json
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from lsp_server.stats import nearest_rank
from model_backend.embedded import WEIGHTS_DIR
from model_backend.engine import Engine
from model_backend.generation import GenerationRequest, GenerationResult
from model_backend.llama import Proj
from model_backend.loading import LoadedModel, LoadSpec, load
from model_backend.memory import gib, kv_bytes_per_token, kv_cache_bytes, model_bytes
from model_backend.static_decode import GRAPH_TAIL_STEPS, StaticDecoder
from model_backend.tokenization import CodeLlamaTokenizer

CODELLAMA_7B: dict[str, Any] = {
    "vocab_size": 32016, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 32, "max_position_embeddings": 16384,
    "rope_theta": 1e6, "rms_norm_eps": 1e-5, "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": False,
}
# The smoke model's weights are drawn wider (as wide as 7B's activations come out at 0.02): at hidden 256 and
# std 0.02 attention is nearly uniform and greedy decoding repeats one token, which would make the output
# comparison between the variants say little.
SMOKE_SHAPE: dict[str, Any] = {**CODELLAMA_7B, "hidden_size": 256, "intermediate_size": 688, "num_hidden_layers": 4,
                               "num_attention_heads": 4, "num_key_value_heads": 4, "initializer_range": 0.08}
TEXT = (Path(__file__).parent / "data" / "inventory.py").read_text()
TYPED = "\n\ndef restock_report(items, threshold=5):\n    low = [item.name for item in items if item.stock < 5]\n"
VARIANTS = {"a": "a_generate", "b": "b_engine_no_reuse", "d": "d_engine_reuse_eager",
            "e": "e_engine_static_reuse_no_graphs", "c": "c_engine_static_reuse",
            "s": "s_engine_static_reuse_speculative", "u": "u_engine_static_reuse_nf4_unfused"}


@dataclass(frozen=True)
class Plan:
    prompt_tokens: int = 2000  # the cold prompt, and the size of the file typed into
    keystrokes: int = 30
    new_tokens: int = 16  # per keystroke
    decode_tokens: int = 128  # decoded after the cold prompt, to measure decode speed
    context_window: int = 4096  # the engines' KV buffer (the server's default `contextWindow`)
    cold_repeats: int = 2  # the best is reported (the first call of a path pays one-off costs)
    agreement_steps: int = 96  # teacher-forced steps after the cold prompt (crosses the 2,048-key window)


FULL = Plan()
SMOKE = Plan(prompt_tokens=200, keystrokes=5, new_tokens=8, decode_tokens=16, context_window=1024,
             agreement_steps=64)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def log(message: str, start: float) -> None:
    print(f"[{time.perf_counter() - start:7.1f} s] {message}", flush=True)


# -- 1. the checkpoint ------------------------------------------------------------------------------------
def make_checkpoint(folder: Path, shape: dict[str, Any], device: torch.device) -> Any:
    """Random bf16 weights in ``shape``, initialised on ``device`` and saved with the embedded tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(**shape)
    with torch.device(device):
        model: Any = LlamaForCausalLM._from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    for name in ("tokenizer.model", "tokenizer_config.json"):
        shutil.copy(WEIGHTS_DIR / name, folder / name)
    del model
    free(device)
    return config


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# -- prompts ---------------------------------------------------------------------------------------------
def build_prompts(tok: CodeLlamaTokenizer, plan: Plan) -> tuple[list[int], list[int], list[list[int]]]:
    """(cold prompt of exactly ``prompt_tokens``, the file's own prompt, one prompt per keystroke).

    SPM, as the server sends it: the suffix (the file's last lines) first, then the prefix, which grows as
    the user types at its end.
    """
    lines = (TEXT * (plan.prompt_tokens // max(1, tok.count(TEXT)) + 2)).splitlines(keepends=True)
    suffix = "".join(lines[-12:])
    prefix: list[str] = []
    budget = plan.prompt_tokens - len(tok.spm_ids("", suffix))
    used = 0
    for line in lines[:-12]:
        if used >= budget:
            break
        prefix.append(line)
        used += tok.count(line)
    text = "".join(prefix)
    base = tok.spm_ids(text, suffix)
    while len(base) < plan.prompt_tokens:  # line counts are estimates: top up
        text += lines[len(prefix) % len(lines)]
        base = tok.spm_ids(text, suffix)
    typed = [tok.spm_ids(text + TYPED[:k], suffix) for k in range(1, plan.keystrokes + 1)]
    return base[:plan.prompt_tokens], base, typed


# -- the variants ----------------------------------------------------------------------------------------
Generate = Callable[[list[int], int], list[int]]  # (prompt, new tokens) -> generated ids
PerToken = Callable[[], float]  # decode ms per token of the last call (after its first token)


def hf_generate(model: Any, device: torch.device) -> tuple[Generate, PerToken]:
    """(a): what a user writes: ``model.generate`` greedy, forced to ``n`` new tokens.

    Decode speed comes from a logits processor that only notes the time of each step (``generate`` waits for
    every step's token before the next, so the intervals are the steps' times).
    """
    from transformers import LogitsProcessorList

    eos = int(model.config.eos_token_id or 2)
    stamps: list[float] = []

    def clock(input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        stamps.append(time.perf_counter())
        return scores

    def run(prompt: list[int], n: int) -> list[int]:
        stamps.clear()
        ids = torch.tensor([prompt], device=device)
        with torch.inference_mode():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                                 do_sample=False, pad_token_id=eos, logits_processor=LogitsProcessorList([clock]))
        return [int(t) for t in out[0, len(prompt):].tolist()]

    def per_token() -> float:
        return (stamps[-1] - stamps[0]) * 1e3 / (len(stamps) - 1) if len(stamps) > 1 else float("nan")

    return run, per_token


def engine_generate(engine: Engine, results: list[GenerationResult]) -> tuple[Generate, PerToken]:
    """(b)-(e): the engine; decode speed from its own clock (it waits for every token, to check the stops)."""

    def run(prompt: list[int], n: int) -> list[int]:
        result = engine.generate(GenerationRequest(prompt_ids=prompt, max_new_tokens=n, stop_ids=set()))
        results.append(result)
        return result.ids

    def per_token() -> float:
        last = results[-1]
        return last.decode_ms / (len(last.ids) - 1) if len(last.ids) > 1 else float("nan")

    return run, per_token


def make_engine(key: str, model: Any, plan: Plan) -> Engine:
    """(b) no reuse, eager; (d) reuse, eager; (e) reuse, static step without graphs; (c) reuse, static + graphs."""
    engine = Engine(model, plan.context_window, reuse_cache=key != "b", decode="static" if key in "csu" else "eager",
                    speculative=key == "s")
    if key == "e":  # (c)'s step and tail handling, run eagerly
        engine.static = StaticDecoder(engine.runner, graphs=False, tail_steps=GRAPH_TAIL_STEPS)
        engine.forward, engine.decode = engine.static.forward, "static"
    if key == "u":  # (c) with q/k/v and gate/up as separate NF4 products (model_backend/nf4_fusion.py off)
        for layer in engine.runner.layers:
            layer.qkv = Proj(layer.qkv.modules, fuse_4bit=False)
            layer.gate_up = Proj(layer.gate_up.modules, fuse_4bit=False)
    return engine


def timed(fn: Generate, prompt: list[int], n: int, device: torch.device) -> tuple[list[int], float]:
    sync(device)
    t0 = time.perf_counter()
    ids = fn(prompt, n)
    sync(device)
    return ids, (time.perf_counter() - t0) * 1e3


def measure(fn: Generate, per_token_ms: PerToken, plan: Plan, cold: list[int], base: list[int],
            typed: list[list[int]], device: torch.device,
            reset: Callable[[], None]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Cold prompt (prefill, decode speed) then the typing replay.  Returns (metrics, outputs)."""
    fn(cold[:32], 2)  # first call of this path: lazy initialisations, kernel selection
    prefill, decode = [], []
    cold_out: list[int] = []
    for _ in range(plan.cold_repeats):
        reset()
        _, one = timed(fn, cold, 1, device)  # prefill + the first token, end to end
        reset()
        cold_out, _ = timed(fn, cold, plan.decode_tokens, device)
        prefill.append(one)
        decode.append(per_token_ms())
    reset()
    fn(base, 1)  # the file is open: the request before the first keystroke (untimed)
    latencies, outputs = [], []
    for prompt in typed:
        ids, ms = timed(fn, prompt, plan.new_tokens, device)
        latencies.append(ms)
        outputs.append(ids)
    per_token = min(decode)
    metrics = {
        "cold_prefill_ms": round(min(prefill), 2), "decode_ms_per_token": round(per_token, 3),
        "decode_tokens_per_s": round(1000 / per_token, 1) if per_token > 0 else None,
        "keystroke_ms_p50": round(nearest_rank(latencies, 50), 2),
        "keystroke_ms_p95": round(nearest_rank(latencies, 95), 2),
        "keystroke_ms": [round(x, 2) for x in latencies],
    }
    return metrics, {"cold": cold_out, "typing": outputs}


@torch.inference_mode()
def step_agreement(engine: Engine, prompt: list[int], steps: int) -> dict[str, Any]:
    """Teacher-forced: the replayed step (c), the same step run eagerly (e) and the eager one-token forward of
    (b)/(d), each at the same token and position over the same cache, for ``steps`` greedy tokens after
    ``prompt``.

    Sequence equality says little on random weights in bf16: their logits are nearly flat, so a rounding
    difference anywhere flips a near-tie and the outputs part from there on.  Here every path sees the same
    inputs at every step, so a disagreement is a single step's, and its top-2 gap on the eager step says
    whether it was a tie (gap within the tolerance that ``static_decode`` accepts) or a wrong step.
    """
    static, runner = engine.static, engine.runner
    assert static is not None, "needs the static decoder"
    engine.reset()
    runner.forward(prompt[:-1], 0)
    token, pos = prompt[-1], len(prompt) - 1
    pairs = {"c_vs_e": [0, 0, 0.0], "c_vs_eager_forward": [0, 0, 0.0], "e_vs_eager_forward": [0, 0, 0.0]}
    repeat_equal = 0  # the eager static step twice on the same inputs: bitwise equal?
    min_gap, near_ties = float("inf"), 0
    for _ in range(steps):
        replay = static.step(token, pos)  # graph replay where captured (c)
        static._set_inputs([token], pos)
        eager = static._step(static.bucket(pos))
        static._set_inputs([token], pos)
        repeat_equal += int(torch.equal(eager, static._step(static.bucket(pos))))
        forward = runner.forward([token], pos)
        top2 = torch.topk(eager, 2).values
        gap = float(top2[0] - top2[1])
        tol = 1e-2 * (float(eager.abs().max()) + 1.0)
        min_gap, near_ties = min(min_gap, gap), near_ties + int(gap <= tol)
        for name, (x, y) in {"c_vs_e": (replay, eager), "c_vs_eager_forward": (replay, forward),
                             "e_vs_eager_forward": (eager, forward)}.items():
            entry = pairs[name]
            if int(x.argmax()) != int(y.argmax()):
                entry[0] += 1
                entry[1] += int(gap <= tol)
            entry[2] = max(entry[2], float((x - y).abs().max()))
        token, pos = int(eager.argmax()), pos + 1
    engine.reset()
    return {"steps": steps, "positions": [len(prompt) - 1, pos - 1], "eager_step_repeatable": repeat_equal,
            "smallest_top2_gap": round(min_gap, 5), "near_tie_steps": near_ties,
            **{name: {"argmax_disagreements": d, "of_which_near_ties": t, "max_abs_logit_diff": round(m, 5)}
               for name, (d, t, m) in pairs.items()}}


def compare(x: dict[str, Any], y: dict[str, Any]) -> dict[str, Any]:
    """Greedy outputs of two variants: the cold run and keystroke by keystroke."""
    same = [p == q for p, q in zip(x["typing"], y["typing"], strict=True)]
    first = next((i for i, s in enumerate(same) if not s), None)
    where = None
    if first is not None:
        p, q = x["typing"][first], y["typing"][first]
        where = {"keystroke": first, "token": next((i for i, (s, t) in enumerate(zip(p, q, strict=False)) if s != t),
                                                   min(len(p), len(q)))}
    return {"equal": x["cold"] == y["cold"] and all(same), "cold_equal": x["cold"] == y["cold"],
            "identical_keystrokes": sum(same), "keystrokes": len(same), "first_difference": where}


# -- the run ---------------------------------------------------------------------------------------------
def requirements(device: torch.device, quantization: str) -> None:
    """Refuse early, before building gigabytes of checkpoint, with the fix."""
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_bench: --device cuda but PyTorch sees no CUDA GPU (use --device cpu --smoke)")
    if quantization == "nf4":
        if device.type != "cuda":
            raise SystemExit("gpu_bench: nf4 needs a CUDA GPU; on CPU use --quantization none (the default there)")
        if importlib.util.find_spec("bitsandbytes") is None:
            raise SystemExit("gpu_bench: quantization nf4 needs bitsandbytes: `pip install bitsandbytes` "
                             "(or `pip install -e .[gpu]`), or run with --quantization none")


def version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def run_variant(key: str, loaded: LoadedModel, plan: Plan, prompts: tuple[list[int], list[int], list[list[int]]],
                device: torch.device, report: dict[str, Any], start: float) -> dict[str, Any] | None:
    """One variant end to end; its metrics go into ``report``, its outputs are returned (None on error)."""
    name = VARIANTS[key]
    entry: dict[str, Any] = {}
    report["variants"][name] = entry
    engine: Engine | None = None
    results: list[GenerationResult] = []
    t0 = time.perf_counter()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    try:
        if key == "a":
            (fn, per_token), reset = hf_generate(loaded.model, device), (lambda: None)
        else:
            engine = make_engine(key, loaded.model, plan)
            t1 = time.perf_counter()
            engine.warm_up(loaded.tokenizer.bos_id)  # as the server does at load: captures the graphs
            entry["warm_up_s"] = round(time.perf_counter() - t1, 2)
            (fn, per_token), reset = engine_generate(engine, results), engine.reset
            if engine.static is not None:
                entry.update(decode="static", cuda_graphs=engine.static.use_graphs,
                             graph_windows=sorted({length for length, _ in engine.static.graphs}),
                             graph_fallback=engine.static.fallback)
            else:
                entry["decode"] = "eager"
        metrics, outputs = measure(fn, per_token, plan, *prompts, device, reset)
        entry.update(metrics)
        if results:  # the typing replay's requests are the last ones
            typing = results[-len(prompts[2]):]
            entry["prefilled_tokens_per_keystroke"] = round(sum(r.prefilled_tokens for r in typing) / len(typing), 2)
            passes, drafted = sum(r.timings.get("forwards", 0) for r in typing), sum(r.timings.get("drafted", 0)
                                                                                   for r in typing)
            entry["tokens_per_model_pass"] = round(sum(len(r.ids) for r in typing) / passes, 3) if passes else None
            entry["draft_acceptance"] = round(sum(r.timings.get("accepted", 0) for r in typing) / drafted, 3) \
                if drafted else None
        entry["distinct_output_tokens"] = len({t for ids in outputs["typing"] for t in ids})
        if engine is not None and engine.static is not None:  # a capture may have failed late
            entry.update(cuda_graphs=engine.static.use_graphs, graph_fallback=engine.static.fallback)
        if key == "c" and engine is not None and engine.static is not None:
            t1 = time.perf_counter()
            entry["step_agreement"] = step_agreement(engine, prompts[0], plan.agreement_steps)
            entry["step_agreement"]["seconds"] = round(time.perf_counter() - t1, 1)
    except Exception:
        entry["error"] = traceback.format_exc()
        outputs = None
    if device.type == "cuda":
        entry["peak_gpu_gib"] = gib(torch.cuda.max_memory_allocated())
    entry["seconds"] = round(time.perf_counter() - t0, 1)
    log(f"{name}: {json.dumps({k: v for k, v in entry.items() if k != 'keystroke_ms'})}", start)
    return outputs  # the engine (and its KV cache) goes with this frame; the caller frees the memory


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, help="JSON results file (required unless --checkpoint-only)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default=None, help="default: cuda if present")
    parser.add_argument("--smoke", action="store_true", help="tiny configuration and workload (CPU CI)")
    parser.add_argument("--quantization", choices=("nf4", "none"), default=None, help="default: nf4 on cuda")
    parser.add_argument("--checkpoint-only", type=Path, metavar="DIR",
                        help="only write the random-weight checkpoint to DIR (e.g. for benchmarks.typing_replay)")
    args = parser.parse_args(argv)
    if args.checkpoint_only:
        device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        args.checkpoint_only.mkdir(parents=True, exist_ok=True)
        make_checkpoint(args.checkpoint_only, SMOKE_SHAPE if args.smoke else CODELLAMA_7B, device)
        return {"checkpoint": str(args.checkpoint_only)}
    if args.out is None:
        parser.error("--out is required")
    start = time.perf_counter()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    quantization = args.quantization or ("nf4" if device.type == "cuda" else "none")
    requirements(device, quantization)
    plan, shape = (SMOKE, SMOKE_SHAPE) if args.smoke else (FULL, CODELLAMA_7B)
    if device.type == "cpu" and not args.smoke:
        log("warning: the 7B shape on CPU needs ~45 GB of memory and a long time; --smoke is the CPU mode", start)
    report: dict[str, Any] = {
        "benchmark": "gpu_bench", "smoke": args.smoke,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "device_type": device.type, "torch": torch.__version__, "transformers": version("transformers"),
        "bitsandbytes": version("bitsandbytes"), "quantization": quantization, "config": shape, "plan": asdict(plan),
        "seconds": {}, "variants": {},
    }

    def save() -> None:
        args.out.write_text(json.dumps(report, indent=2) + "\n")

    folder = Path(tempfile.mkdtemp(prefix="gpu_bench_"))
    try:
        t0 = time.perf_counter()
        config = make_checkpoint(folder, shape, device)
        report["seconds"]["checkpoint"] = round(time.perf_counter() - t0, 1)
        log(f"checkpoint with random weights saved ({report['seconds']['checkpoint']} s)", start)
        t0 = time.perf_counter()
        loaded = load(LoadSpec(model=str(folder), quantization=quantization, device=device.type))
        report["seconds"]["load"] = round(time.perf_counter() - t0, 1)
        report["compute_dtype"] = str(loaded.dtype).removeprefix("torch.")
        # NF4 really loaded: the attention projections are bitsandbytes 4-bit layers (``Linear4bit``), not ``Linear``
        report["projection_type"] = next(type(module).__name__ for name, module in loaded.model.named_modules()
                                         if name.endswith("q_proj"))
        weights = model_bytes(loaded.model)
        act_dtype = loaded.dtype if device.type == "cuda" else torch.float32  # the engine's cache dtype
        report["memory"] = {
            "weights_gib": gib(weights),
            "gpu_allocated_after_load_gib": gib(torch.cuda.memory_allocated()) if device.type == "cuda" else None,
            "kv_cache_kib_per_token": kv_bytes_per_token(config, act_dtype) / 1024,
            "kv_cache_gib_context_window": gib(kv_cache_bytes(config, plan.context_window, act_dtype)),
            "kv_cache_gib_16k": gib(kv_cache_bytes(config, 16384, act_dtype)),
            "weights_plus_kv_16k_gib": gib(weights + kv_cache_bytes(config, 16384, act_dtype)),
        }
        log(f"loaded through model_backend.loading ({quantization}, {report['compute_dtype']}, "
            f"{report['seconds']['load']} s): {json.dumps(report['memory'])}", start)
        save()
        prompts = build_prompts(loaded.tokenizer, plan)
        report["prompt_tokens"] = len(prompts[0])
        report["typing_prompt_tokens"] = [len(prompts[2][0]), len(prompts[2][-1])]
        outputs: dict[str, dict[str, Any] | None] = {}
        for key in ("a", "b", "d", "e", "c", "u", "s"):
            outputs[key] = run_variant(key, loaded, plan, prompts, device, report, start)
            free(device)
            save()
        finish(report, outputs, device)
        if device.type == "cuda":  # measured, not computed: the weights plus a 16k-token KV cache
            engine = Engine(loaded.model, 16384, decode="eager")
            report["memory"]["gpu_allocated_weights_plus_kv_16k_gib"] = gib(torch.cuda.memory_allocated())
            del engine
            free(device)
        save()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        report["seconds"]["total"] = round(time.perf_counter() - start, 1)
        save()
    log(f"done: {json.dumps({k: report.get(k) for k in ('speedup_c_over_a_p50', 'equality')})}", start)
    return report


def finish(report: dict[str, Any], outputs: dict[str, dict[str, Any] | None], device: torch.device) -> None:
    """Speed-ups, output equality and the peak memory, from the variants' results."""
    v = report["variants"]

    def ratio(x: str, y: str, field: str) -> float | None:
        a, b = v.get(VARIANTS[x], {}).get(field), v.get(VARIANTS[y], {}).get(field)
        return round(a / b, 2) if a and b else None

    report["speedup_c_over_a_p50"] = ratio("a", "c", "keystroke_ms_p50")
    report["speedup_c_over_b_p50"] = ratio("b", "c", "keystroke_ms_p50")
    report["speedup_c_over_d_p50"] = ratio("d", "c", "keystroke_ms_p50")
    report["speedup_c_over_e_p50"] = ratio("e", "c", "keystroke_ms_p50")
    report["decode_speedup_c_over_a"] = ratio("a", "c", "decode_ms_per_token")
    report["speedup_s_over_c_p50"] = ratio("c", "s", "keystroke_ms_p50")
    report["decode_speedup_s_over_c"] = ratio("c", "s", "decode_ms_per_token")
    report["decode_speedup_c_over_u"] = ratio("u", "c", "decode_ms_per_token")  # fused NF4 vs separate products
    report["speedup_c_over_u_p50"] = ratio("u", "c", "keystroke_ms_p50")
    equality: dict[str, Any] = {}
    for x, y in (("c", "e"), ("b", "c"), ("d", "c"), ("b", "d"), ("a", "b"), ("c", "s"), ("c", "u")):
        ox, oy = outputs.get(x), outputs.get(y)
        equality[f"{x}_vs_{y}"] = compare(ox, oy) if ox is not None and oy is not None else None
    for x, y in (("b", "c"), ("c", "e"), ("c", "s")):
        pair = equality[f"{x}_vs_{y}"]
        equality[f"{x}_equals_{y}"] = bool(pair and pair["equal"])
    equality["note"] = ("Sequences: equal on CPU in float32.  In bf16 on CUDA a near-tie between two tokens may go "
                        "either way (other kernels, another prefill split, or the same kernel run twice), after which "
                        "the outputs part; c's step_agreement compares the paths step by step at the same inputs")
    report["equality"] = equality
    peaks = [entry["peak_gpu_gib"] for entry in v.values() if "peak_gpu_gib" in entry]
    report["memory"]["max_memory_allocated_gib"] = max(peaks) if peaks else None  # one variant's engine at a time
    report["memory"]["max_memory_allocated_gib_c"] = v.get(VARIANTS["c"], {}).get("peak_gpu_gib")
    report["errors"] = [name for name, entry in v.items() if "error" in entry]


if __name__ == "__main__":
    result = main()
    sys.exit(1 if result.get("errors") else 0)
