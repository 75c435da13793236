"""Decode paths on this machine: the eager engine against the static (fixed-shape) decode step, in one process.

    python -m benchmarks.decode_paths [--model DIR] [--device cpu|cuda] [--repeats 3] [--json out.json]

1. Typing replay at the engine level: ``TYPED`` is typed at the end of ``benchmarks/data/inventory.py`` (an SPM
   prompt, as the server sends it), one request per keystroke (16 new tokens, no stop ids, cache reuse on).
   Each keystroke's prompt goes to every path in turn, so a noisy machine slows them alike.  Reported per
   path: keystroke latency p50/p95, decode ms per token, and the ratio static / eager; and whether the greedy
   outputs agree.  On CUDA the static path replays CUDA graphs; ``static_no_graphs`` runs the same step eagerly.
2. The first request after loading (a cold ~1,200-token prompt), with and without the engine's warm-up, each
   in a fresh process (one-off costs are per process), alternating.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from lsp_server.stats import nearest_rank
from model_backend.engine import Engine
from model_backend.generation import GenerationRequest
from model_backend.loading import LoadSpec, load
from model_backend.static_decode import StaticDecoder

TEXT = (Path(__file__).parent / "data" / "inventory.py").read_text()
TYPED = '''

def restock_report(items, threshold=5):
    """Return the names of items whose stock is below the threshold."""
    low = [item.name for item in items if item.stock < threshold]
'''
FIRST_REQUEST = """
import json, sys, time
from model_backend.engine import Engine
from model_backend.generation import GenerationRequest
from model_backend.loading import LoadSpec, load
spec = LoadSpec(model=sys.argv[1] or None, device=sys.argv[2])
loaded = load(spec)
engine = Engine(loaded.model, 4096)
t0 = time.perf_counter()
if sys.argv[3] == "1":
    engine.warm_up(loaded.tokenizer.bos_id)
t1 = time.perf_counter()
text = open(sys.argv[4]).read()
prompt = loaded.tokenizer.spm_ids(text, "")
result = engine.generate(GenerationRequest(prompt_ids=prompt, max_new_tokens=16, stop_ids=set()))
t2 = time.perf_counter()
print(json.dumps({"warm_up_ms": (t1 - t0) * 1e3, "first_request_ms": (t2 - t1) * 1e3, "tokens": len(prompt)}))
"""


def engines(model: Any, device: torch.device) -> dict[str, Engine]:
    out = {"eager": Engine(model, 4096, decode="eager"), "static": Engine(model, 4096, decode="static")}
    if device.type == "cuda":
        plain = Engine(model, 4096, decode="eager")
        assert out["static"].static is not None
        plain.static = StaticDecoder(plain.runner, graphs=False, tail_steps=out["static"].static.tail_steps)
        plain.forward, plain.decode = plain.static.forward, "static"
        out["static_no_graphs"] = plain
    return out


def typing_replay(args: argparse.Namespace) -> dict[str, Any]:
    loaded = load(LoadSpec(model=args.model, device=args.device))
    tok, device = loaded.tokenizer, loaded.device
    paths = engines(loaded.model, device)
    for engine in paths.values():
        engine.warm_up(tok.bos_id)
    lat: dict[str, list[float]] = {k: [] for k in paths}
    per_token: dict[str, list[float]] = {k: [] for k in paths}
    outputs: dict[str, list[list[int]]] = {k: [] for k in paths}
    for _ in range(args.repeats):
        for engine in paths.values():
            engine.reset()
        for k in range(len(TYPED) + 1):
            prompt = tok.spm_ids(TEXT + TYPED[:k], "")
            for name, engine in paths.items():
                t0 = time.perf_counter()
                result = engine.generate(GenerationRequest(prompt_ids=prompt, max_new_tokens=16, stop_ids=set()))
                if k == 0:
                    continue  # the file's first request: a cold prefill, not a keystroke
                lat[name].append((time.perf_counter() - t0) * 1e3)
                per_token[name].append(result.decode_ms / max(1, len(result.ids) - 1))
                outputs[name].append(result.ids)
    report: dict[str, Any] = {"keystrokes": len(TYPED), "repeats": args.repeats, "paths": {}}
    for name in paths:
        report["paths"][name] = {
            "keystroke_ms_p50": round(statistics.median(lat[name]), 2),
            "keystroke_ms_p95": round(nearest_rank(lat[name], 95), 2),
            "decode_ms_per_token_p50": round(statistics.median(per_token[name]), 3),
            "outputs_equal_eager": sum(a == b for a, b in zip(outputs[name], outputs["eager"], strict=True)),
        }
    eager, static = report["paths"]["eager"], report["paths"]["static"]
    report["ratio_static_over_eager"] = {
        "keystroke_p50": round(static["keystroke_ms_p50"] / eager["keystroke_ms_p50"], 3),
        "decode_per_token_p50": round(static["decode_ms_per_token_p50"] / eager["decode_ms_per_token_p50"], 3),
        # per keystroke, then the median: pairs measured back to back share the machine's state
        "keystroke_paired_median": round(statistics.median(s / e for s, e in zip(lat["static"], lat["eager"],
                                                                                  strict=True)), 3),
    }
    return report


def first_request(args: argparse.Namespace) -> dict[str, Any]:
    runs: dict[str, list[dict[str, float]]] = {"no_warm_up": [], "warm_up": []}
    for _ in range(args.repeats):
        for name, flag in (("no_warm_up", "0"), ("warm_up", "1")):
            out = subprocess.run([sys.executable, "-c", FIRST_REQUEST, args.model or "", args.device, flag,
                                  str(Path(__file__).parent / "data" / "inventory.py")],
                                 capture_output=True, text=True, check=True)
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {name: {"first_request_ms_median": round(statistics.median(r["first_request_ms"] for r in rs), 1),
                   "warm_up_ms_median": round(statistics.median(r["warm_up_ms"] for r in rs), 1),
                   "first_request_ms": [round(r["first_request_ms"], 1) for r in rs],
                   "prompt_tokens": rs[0]["tokens"]} for name, rs in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default=None, help="checkpoint folder (default: the embedded model)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-first-request", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    report: dict[str, Any] = {"benchmark": "decode_paths", "torch": torch.__version__,
                              "threads": torch.get_num_threads(), "typing": typing_replay(args)}
    print(json.dumps(report["typing"], indent=2), flush=True)
    if not args.skip_first_request:
        report["first_request"] = first_request(args)
        print(json.dumps(report["first_request"], indent=2), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
