"""Several editors typing at once against one llama-server: latency and throughput as N grows.

Each simulated editor is one ``CompletionCore`` with the ``llama.cpp`` backend (what one editor's server runs), on
its own thread, typing into its own file one character at a time and asking for a completion after each (the
full pipeline: context, SPM prompt, streamed generation, post-processing).  All editors share one llama-server
started here with ``--parallel P``.  Slot choice is compared: ``similarity`` (``id_slot: -1``, the server routes by
cached-prompt similarity), ``document`` (the ``engineSlots: document`` setting: each document's URI hashed to a
slot, so two editors may share one) and ``fixed`` (editor i always uses slot i mod P: the collision-free ideal
that needs someone to hand out slots).

    python -m benchmarks.many_editors --editors 1 4 8 16 --keystrokes 12
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from lsp_server.completion.core import CompletionCore
from lsp_server.completion.documents import DocumentStore
from lsp_server.settings import Settings
from lsp_server.stats import nearest_rank
from model_backend.remote import LlamaCppBackend
from tests.engines.llama_server import EMBEDDED_WEIGHTS, LLAMA_SERVER, convert_cached, launch, stop

DEPOT = Path(__file__).parent / "repo_context" / "depot"
TYPED = "total = sum(item.price for item in items)"


def editor(i: int, settings: Settings, slots: str, parallel: int, keystrokes: int,
           out: list[dict[str, Any]], start: threading.Barrier) -> None:
    core = CompletionCore(dataclasses.replace(settings, engine_slots="document" if slots == "document" else
                                              "similarity"))
    core.load()
    if slots == "fixed":
        assert isinstance(core.backend, LlamaCppBackend)
        core.backend.slot = i % parallel
    files = sorted(DEPOT.glob("*.py"))
    text = files[i % len(files)].read_text() + f"\n\ndef editor_{i}(items):\n    "
    store = DocumentStore()
    uri = f"file:///home/dev{i}/depot/{files[i % len(files)].name}"  # each editor on its own machine's checkout
    store.open(uri, "python", 1, text)
    start.wait()
    for k, ch in enumerate(TYPED[:keystrokes]):
        text += ch
        store.close(uri)
        store.open(uri, "python", k + 2, text)
        t0 = time.perf_counter()
        outcome = core.generate(core.prepare(store.get(uri), len(text)))
        out.append({"editor": i, "ms": (time.perf_counter() - t0) * 1e3, "prefilled": outcome.result.prefilled_tokens,
                    "shown": outcome.text is not None, "end": time.perf_counter()})


def run(n: int, slots: str, url: str, parallel: int, keystrokes: int) -> dict[str, Any]:
    settings = dataclasses.replace(Settings(), backend="llama.cpp", endpoint=url, prefix_tokens=600,
                                   suffix_tokens=200, max_new_tokens=16, alternatives=0, time_budget_ms=60_000,
                                   request_timeout_ms=120_000)
    rows: list[dict[str, Any]] = []
    barrier = threading.Barrier(n + 1)
    threads = [threading.Thread(target=editor, args=(i, settings, slots, parallel, keystrokes, rows, barrier))
               for i in range(n)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ms = [r["ms"] for r in rows]
    return {"editors": n, "slots": slots, "requests": len(rows), "p50_ms": round(nearest_rank(ms, 50), 1),
            "p95_ms": round(nearest_rank(ms, 95), 1), "answered_per_s": round(len(rows) / wall, 2),
            "prefilled_per_request_mean": round(sum(r["prefilled"] for r in rows) / len(rows), 1),
            "prefilled_p95": nearest_rank([r["prefilled"] for r in rows], 95), "wall_s": round(wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--editors", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--keystrokes", type=int, default=12)
    parser.add_argument("--parallel", type=int, default=8, help="llama-server slots")
    parser.add_argument("--threads", type=int, default=2, help="llama-server threads")
    parser.add_argument("--slots", nargs="+", default=["similarity", "document", "fixed"])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "many_editors_cpu.json")
    args = parser.parse_args()
    gguf = convert_cached(EMBEDDED_WEIGHTS, "f32")
    results = []
    with tempfile.TemporaryDirectory() as logs:
        for slots in args.slots:
            for n in args.editors:
                server = launch(LLAMA_SERVER, gguf, log_dir=Path(logs), parallel=args.parallel,
                                ctx=2048 * args.parallel, threads=args.threads)
                try:
                    row = run(n, slots, server.url, args.parallel, args.keystrokes)
                finally:
                    stop(server)
                print(json.dumps(row), flush=True)
                results.append(row)
    args.out.write_text(json.dumps({"engine": "llama-server (embedded model, f32 GGUF)", "parallel": args.parallel,
                                    "threads": args.threads, "keystrokes": args.keystrokes, "rows": results},
                                   indent=2) + "\n")


if __name__ == "__main__":
    main()
