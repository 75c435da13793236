"""Our engine against llama.cpp's ``llama-server`` on the same weights and the same token ids, in one run.

    python -m benchmarks.llamacpp_side_by_side [--keystrokes 60] [--threads 2] [--json out.json]

The embedded model runs in both engines as f16 and as f32 (GGUF via ``scripts/convert_gguf.py``; llama-server
built by ``scripts/install_llama_server.sh``).  ``TYPED`` is typed at the end of ``benchmarks/data/inventory.py``,
one request per keystroke with the SPM prompt ids our prompt builder makes (no token healing, so both engines get
exactly the same ids; llama-server gets them as a list with ``cache_prompt``, ``temperature 0``, ``top_k 1``).
Two shapes: a newline stop (``stop: ["\\n"]`` there, the same rule on the decoded text here) with at most 16 tokens,
and always 16 tokens.  Our variants: plain decoding and speculative decoding.  Every keystroke's request goes to
every variant in turn (rotating the order), so a busy machine slows them alike; figures are ratios from one run.

Reported per variant and shape: keystroke p50/p95 (our in-process engine call; llama.cpp's HTTP round trip), decode
ms per generated token (each engine's own clock: decode time over tokens after the first), tokens per model pass
and draft acceptance (ours), and greedy agreement with llama.cpp on the same weights (keystrokes with equal ids).
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

from lsp_server.stats import nearest_rank
from model_backend.engine import Engine
from model_backend.generation import GenerationRequest
from model_backend.loading import LoadSpec, load
from model_backend.speculative import Drafter
from model_backend.tokenization import CodeLlamaTokenizer

TEXT = (Path(__file__).parent / "data" / "inventory.py").read_text()
TYPED = '''

def restock_report(items, threshold=5):
    """Return the names of items whose stock is below the threshold."""
    low = [item.name for item in items if item.stock < threshold]
    return sorted(low)
'''
MAX_NEW = 16


class Ours:
    """One of our engines (plain or speculative) on one dtype."""

    def __init__(self, model: Any, tok: CodeLlamaTokenizer, speculative: bool,
                 draft_tokens: int | None = None, decode: str = "eager") -> None:
        self.engine = Engine(model, 4096, vocab_limit=tok.vocab_size, speculative=speculative,
                             draft_tokens=draft_tokens, decode=decode)
        self.engine.warm_up(tok.bos_id)
        if self.engine.compiled is not None and not self.engine.compiled.ready:
            raise SystemExit(f"the compiled step failed: {self.engine.compiled.failed}")
        self.tok = tok

    def run(self, ids: list[int], newline: bool) -> dict[str, Any]:
        tok = self.tok

        def stop(out: list[int]) -> bool:
            return "\n" in tok.decode_middle(out)

        t0 = time.perf_counter()
        r = self.engine.generate(GenerationRequest(prompt_ids=ids, max_new_tokens=MAX_NEW, stop_ids=tok.stop_ids(),
                                                   should_stop=stop if newline else None))
        wall = (time.perf_counter() - t0) * 1e3
        # tokens the prefill's pass produced: its own choice plus any draft it verified and accepted
        first = 1 + int(r.timings["prefill_accepted"]) if r.ids else 0
        return {"ms": wall, "ids": r.ids, "decode_ms": r.decode_ms, "engine_ms": r.prefill_ms + r.decode_ms,
                "first_pass_tokens": first, "prefilled": r.prefilled_tokens,
                "forwards": r.timings["forwards"], "drafted": r.timings["drafted"], "accepted": r.timings["accepted"]}


class LlamaCpp:
    """A running llama-server, asked through ``/completion`` with token ids."""

    def __init__(self, url: str) -> None:
        from tests.engines.llama_server import httpx

        self.client = httpx.Client(base_url=url, timeout=120.0)

    def run(self, ids: list[int], newline: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"prompt": ids, "n_predict": MAX_NEW, "temperature": 0, "top_k": 1,
                                "cache_prompt": True, "return_tokens": True, "stream": False,
                                "stop": ["\n"] if newline else []}
        t0 = time.perf_counter()
        data = self.client.post("/completion", json=body).json()
        wall = (time.perf_counter() - t0) * 1e3
        t = data.get("timings", {})
        n = int(t.get("predicted_n", 0))
        return {"ms": wall, "ids": list(data.get("tokens", [])), "decode_ms": float(t.get("predicted_ms", 0.0)),
                "engine_ms": float(t.get("prompt_ms", 0.0)) + float(t.get("predicted_ms", 0.0)),
                "first_pass_tokens": 1 if n else 0,
                "prefilled": int(t.get("prompt_n", 0)), "forwards": n, "drafted": 0, "accepted": 0}


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    lat = [r["ms"] for r in rows]
    # decode ms per token: the decode passes' time over the tokens they produced (not the prefill pass's)
    per_token = [r["decode_ms"] / (len(r["ids"]) - r["first_pass_tokens"]) for r in rows
                 if len(r["ids"]) > r["first_pass_tokens"]]
    # all in: the engine's own time for the whole request (prompt and decode) over every token it produced
    all_in = [r["engine_ms"] / len(r["ids"]) for r in rows if r["ids"]]
    tokens = sum(len(r["ids"]) for r in rows)
    drafted = sum(r["drafted"] for r in rows)
    return {
        "keystroke_ms_p50": round(nearest_rank(lat, 50), 2), "keystroke_ms_p95": round(nearest_rank(lat, 95), 2),
        "decode_ms_per_token_median": round(statistics.median(per_token), 3) if per_token else None,
        "all_in_ms_per_token_median": round(statistics.median(all_in), 3) if all_in else None,
        "tokens": tokens, "prefilled_per_keystroke_mean": round(statistics.mean(r["prefilled"] for r in rows), 2),
        "tokens_per_model_pass": round(tokens / sum(r["forwards"] for r in rows), 3)
        if sum(r["forwards"] for r in rows) else None,
        "draft_acceptance": round(sum(r["accepted"] for r in rows) / drafted, 3) if drafted else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keystrokes", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2, help="torch threads here, -t for llama-server")
    parser.add_argument("--dtypes", default="f16,f32")
    parser.add_argument("--draft-tokens", default="",
                        help="comma-separated k values: one more speculative variant each, `_kN` (`_speculative` "
                             "itself has the engine's default drafts)")
    parser.add_argument("--no-pause-variant", action="store_true",
                        help="also a speculative variant whose drafting never pauses after misses")
    parser.add_argument("--gap-ms", type=float, default=0.0,
                        help="idle pause before every request (typing leaves tens of ms between keystrokes): lets "
                             "the other engine's threads go quiet, so neither runs beside the other's busy-waiting")
    parser.add_argument("--previous-only-variant", action="store_true",
                        help="also speculative variants that draft only from the previous suggestion")
    parser.add_argument("--decode", default="eager",
                        help="comma-separated decode modes of our variants (eager, compiled): plain and speculative "
                             "each; the first mode's variants have no suffix, the others `_<mode>`")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from tests.engines.llama_server import EMBEDDED_WEIGHTS, LLAMA_SERVER, convert_cached, launch, stop

    torch.set_num_threads(args.threads)
    variants: dict[str, Any] = {}
    servers = []
    tok: CodeLlamaTokenizer | None = None
    try:
        for dtype in args.dtypes.split(","):
            loaded = load(LoadSpec(dtype={"f16": "float16", "f32": "float32"}[dtype]))
            tok = loaded.tokenizer
            for i, decode in enumerate(args.decode.split(",")):
                suffix = f"_{decode}" if i else ""
                variants[f"ours_{dtype}{suffix}"] = Ours(loaded.model, tok, speculative=False, decode=decode)
                variants[f"ours_{dtype}{suffix}_speculative"] = Ours(loaded.model, tok, speculative=True,
                                                                     decode=decode)
            for k in (int(k) for k in args.draft_tokens.split(",") if k):
                variants[f"ours_{dtype}_speculative_k{k}"] = Ours(loaded.model, tok, speculative=True, draft_tokens=k)
            if args.previous_only_variant:  # drafts only from the previous suggestion (none from the prompt)
                for i, decode in enumerate(args.decode.split(",")):
                    variant = Ours(loaded.model, tok, speculative=True, decode=decode)
                    variant.engine.drafter = Drafter(prompt_cap=0)
                    variants[f"ours_{dtype}{f'_{decode}' if i else ''}_speculative_previous"] = variant
            if args.no_pause_variant:  # drafting never pauses after misses (speculative.COOL_DOWN = 0)
                variant = Ours(loaded.model, tok, speculative=True)
                variant.engine.drafter = Drafter(cool_down=0)
                variants[f"ours_{dtype}_speculative_nopause"] = variant
            server = launch(LLAMA_SERVER, convert_cached(EMBEDDED_WEIGHTS, dtype), log_dir=Path("build/llama-logs"),
                            parallel=1, ctx=4096, threads=args.threads)
            servers.append(server)
            variants[f"llama.cpp_{dtype}"] = LlamaCpp(server.url)
        assert tok is not None
        names = list(variants)
        rows: dict[str, dict[str, list[dict[str, Any]]]] = {s: {n: [] for n in names} for s in ("newline", "16")}
        typed = TYPED[:args.keystrokes]
        for k in range(1, len(typed) + 1):
            ids = tok.spm_ids(TEXT + typed[:k], "")
            for shape in rows:
                order = names[k % len(names):] + names[:k % len(names)]
                for name in order:
                    if args.gap_ms:
                        time.sleep(args.gap_ms / 1e3)
                    rows[shape][name].append(variants[name].run(ids, shape == "newline"))
    finally:
        for server in servers:
            stop(server)
    report: dict[str, Any] = {"benchmark": "llamacpp_side_by_side", "keystrokes": len(typed), "threads": args.threads,
                              "gap_ms": args.gap_ms,
                              "machine": {"platform": platform.platform(), "torch": torch.__version__,
                                          "cpu_count": torch.get_num_threads()},
                              "prompt_tokens": len(tok.spm_ids(TEXT + typed, "")), "shapes": {}}
    for shape, by_name in rows.items():
        out: dict[str, Any] = {name: summary(r) for name, r in by_name.items()}
        for dtype in args.dtypes.split(","):
            ref = by_name[f"llama.cpp_{dtype}"]
            base = out[f"llama.cpp_{dtype}"]
            ours = [n for n in names if n.startswith(f"ours_{dtype}")]
            for name in ours:
                mine = out[name]
                mine["agree_with_llama.cpp"] = sum(
                    a["ids"] == b["ids"] for a, b in zip(by_name[name], ref, strict=True))
                mine["p50_vs_llama.cpp"] = round(mine["keystroke_ms_p50"] / base["keystroke_ms_p50"], 3)
                mine["p95_vs_llama.cpp"] = round(mine["keystroke_ms_p95"] / base["keystroke_ms_p95"], 3)
                if mine["all_in_ms_per_token_median"] and base["all_in_ms_per_token_median"]:
                    mine["all_in_ms_per_token_vs_llama.cpp"] = round(
                        mine["all_in_ms_per_token_median"] / base["all_in_ms_per_token_median"], 3)
                if mine["decode_ms_per_token_median"] and base["decode_ms_per_token_median"]:
                    mine["ms_per_token_vs_llama.cpp"] = round(
                        mine["decode_ms_per_token_median"] / base["decode_ms_per_token_median"], 3)
            for name in ours:
                # speculative variants against plain decoding of the same decode mode; other modes against eager
                plain = name.split("_speculative")[0]
                key, ref_name = (("same_ids_as_plain", plain) if plain != name
                                 else ("same_ids_as_eager", f"ours_{dtype}"))
                if ref_name != name:
                    out[name][key] = sum(
                        a["ids"] == b["ids"] for a, b in zip(by_name[ref_name], by_name[name], strict=True))
        report["shapes"][shape] = out
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
