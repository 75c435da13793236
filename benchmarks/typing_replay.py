"""Typing replay over real LSP: type a function character by character, ask for a completion after each key.

Starts the real server (``python -m lsp_server``) with the configured model, opens a realistic Python file,
types ``FUNCTION`` at the end of it one character at a time (an incremental ``didChange`` per key, like an
editor), sends ``textDocument/inlineCompletion`` after each key and waits for the answer.  Runs the replay
with KV-cache reuse on and off, and with the search for alternatives off, in the same run; reports per variant:
keystroke→suggestion latency p50/p95 (client-side wall clock), prompt tokens computed per keystroke, how many
model calls tried alternatives, and the server's own overhead (round trip minus the engine's prefill+decode
time, from ``codellama/stats``).  A last variant types into
a 5,000-line file to measure that overhead where documents are big.

    python -m benchmarks.typing_replay [--model DIR] [--quantization nf4] [--max-new-tokens 64] [--repeats 2]
        [--json benchmarks/results/typing.json] [--speculation]

``--speculation`` runs only the speculative-decoding and prefetch variants (both on, speculative off, prefetch
off, both off), interleaved per repeat, with the model-call counters (tokens per model pass, draft acceptance,
prefetched and prefetch hits) per variant.

``--accept`` makes the simulated user accept (TAB) a suggestion whenever it is exactly the text still to type, after
``--think-ms`` of reading it, and ask again at once, as editors do after an accept; otherwise they type the next
character.  It reports accepts and the accept→next-suggestion latency: what prefetch is for.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp
from pygls.lsp.client import LanguageClient

from lsp_server.settings import Settings
from lsp_server.stats import nearest_rank

DEFAULT_ALTERNATIVES = Settings().alternatives
DEFAULT_SPECULATIVE = Settings().speculative
DEFAULT_PREFETCH = Settings().prefetch
HERE = Path(__file__).parent
CONTEXT_FILE = HERE / "data" / "inventory.py"
FUNCTION = '''

def restock_report(items, threshold=5):
    """Return the names of items whose stock is below the threshold."""
    low = [item.name for item in items if item.stock < threshold]
    return sorted(low)
'''


def utf16_position(text: str) -> lsp.Position:
    line = text.count("\n")
    col = len(text[text.rfind("\n") + 1:].encode("utf-16-le")) // 2
    return lsp.Position(line=line, character=col)


def plain(obj: Any) -> Any:
    """Custom responses arrive as namedtuples: back to dicts."""
    if hasattr(obj, "_asdict"):
        return {k: plain(v) for k, v in obj._asdict().items()}
    return obj


async def stats(client: LanguageClient) -> dict[str, Any]:
    result: dict[str, Any] = plain(await client.protocol.send_request_async("codellama/stats", {}))
    return result


def speculation_counters(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What one variant's model calls did: tokens per model pass, draft acceptance, next suggestions computed ahead."""
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in (
        "generated_tokens", "decode_forwards", "draft_tokens", "draft_accepted", "prefetched", "prefetch_hits",
        "prefetch_cut", "prefetch_wait_ms")}
    return {
        "tokens_per_model_pass": round(delta["generated_tokens"] / delta["decode_forwards"], 3)
        if delta["decode_forwards"] else None,
        "draft_acceptance": round(delta["draft_accepted"] / delta["draft_tokens"], 3)
        if delta["draft_tokens"] else None,
        "prefetched": delta["prefetched"], "prefetch_hits": delta["prefetch_hits"],
        # keystrokes that cut a running prefetch short, and how long they waited for the worker in all
        "prefetch_cut": delta["prefetch_cut"], "prefetch_wait_ms": round(delta["prefetch_wait_ms"], 1),
    }


def big_file(base: str, lines: int) -> str:
    """``base`` repeated (functions renamed per copy) until it has ``lines`` lines."""
    copies: list[str] = []
    n = 0
    while n < lines:
        copies.append(base.replace("def ", f"def v{len(copies)}_"))
        n += base.count("\n")
    return "".join(copies)


def insertable(result: Any) -> str:
    """The first suggestion's text if it inserts at the cursor (no range over existing text), else ''."""
    if not isinstance(result, lsp.InlineCompletionList) or not result.items:
        return ""
    item = result.items[0]
    if item.range is not None and item.range.start != item.range.end:
        return ""
    return item.insert_text if isinstance(item.insert_text, str) else ""


async def replay(client: LanguageClient, uri: str, base: str, settings: dict[str, Any], accept: bool = False,
                 think_ms: float = 300.0) -> dict[str, Any]:
    """Type FUNCTION after ``base``; one completion per keystroke (and per accept, with ``accept``)."""
    client.workspace_did_change_configuration(lsp.DidChangeConfigurationParams(settings=settings))
    client.text_document_did_open(lsp.DidOpenTextDocumentParams(
        text_document=lsp.TextDocumentItem(uri=uri, language_id="python", version=0, text=base)))
    text = base
    latencies, model_latencies, prefilled, overhead, stages, shown, retried = [], [], [], [], [], 0, 0
    after_accept: list[float] = []
    version, suggestion, typed = 0, "", 0
    while typed < len(FUNCTION):
        rest = FUNCTION[typed:]
        accepting = accept and bool(suggestion) and rest.startswith(suggestion)
        if accepting:
            await asyncio.sleep(think_ms / 1e3)  # the user reads the suggestion, then presses TAB
        change = suggestion if accepting else rest[0]
        pos = utf16_position(text)
        text += change
        typed += len(change)
        version += 1
        client.text_document_did_change(lsp.DidChangeTextDocumentParams(
            text_document=lsp.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[lsp.TextDocumentContentChangePartial(range=lsp.Range(start=pos, end=pos),
                                                                  text=change)]))
        before = await stats(client)
        t0 = time.perf_counter()
        result = await client.text_document_inline_completion_async(lsp.InlineCompletionParams(
            text_document=lsp.TextDocumentIdentifier(uri=uri), position=utf16_position(text),
            context=lsp.InlineCompletionContext(trigger_kind=lsp.InlineCompletionTriggerKind.Automatic)))
        elapsed = (time.perf_counter() - t0) * 1e3
        after = await stats(client)
        suggestion = insertable(result)
        if accepting:
            after_accept.append(elapsed)
        else:
            latencies.append(elapsed)
        shown += isinstance(result, lsp.InlineCompletionList) and bool(result.items)
        if after["generated_tokens"] != before["generated_tokens"]:  # the model ran (not a typed-ahead hit)
            prefilled.append(after["prefilled_tokens"] - before["prefilled_tokens"])
            model_latencies.append(elapsed)
            last = after["last"]
            overhead.append(elapsed - last["prefill_ms"] - last["decode_ms"])
            stages.append(last["context_ms"] + last["prompt_ms"])
            retried += last.get("answers_tried", 1) > 1
    client.text_document_did_close(lsp.DidCloseTextDocumentParams(text_document=lsp.TextDocumentIdentifier(uri=uri)))
    accepted = {
        "accepts": len(after_accept),
        "after_accept_ms_p50": round(nearest_rank(after_accept, 50), 1) if after_accept else None,
        "after_accept_ms_p95": round(nearest_rank(after_accept, 95), 1) if after_accept else None,
    } if accept else {}
    return {
        "keystrokes": len(latencies), **accepted, "suggestions_shown": shown,
        "latency_ms_p50": round(nearest_rank(latencies, 50), 1),
        "latency_ms_p95": round(nearest_rank(latencies, 95), 1),
        "model_calls": len(model_latencies),
        "model_calls_retried": retried,  # the first answer did not fit the code; alternatives were decoded
        "model_call_latency_ms_p50": round(nearest_rank(model_latencies, 50), 1) if model_latencies else None,
        "model_call_latency_ms_p95": round(nearest_rank(model_latencies, 95), 1) if model_latencies else None,
        "prefilled_tokens_per_keystroke_mean": round(statistics.mean(prefilled[1:]), 2) if len(prefilled) > 1 else None,
        "first_request_prefilled_tokens": prefilled[0] if prefilled else None,
        "server_overhead_ms_p50": round(nearest_rank(overhead, 50), 2) if overhead else None,
        "context_and_prompt_ms_p50": round(nearest_rank(stages, 50), 2) if stages else None,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    base = CONTEXT_FILE.read_text()
    client = LanguageClient("typing-replay", "0")
    await client.start_io(sys.executable, "-m", "lsp_server", "--log-level", "warning")
    options: dict[str, Any] = {"timeBudgetMs": 10_000}
    for key, value in (("model", args.model), ("dtype", args.dtype), ("quantization", args.quantization)):
        if value:
            options[key] = value
    await client.initialize_async(lsp.InitializeParams(capabilities=lsp.ClientCapabilities(),
                                                       initialization_options=options))
    client.initialized(lsp.InitializedParams())
    variants: dict[str, tuple[str, dict[str, Any]]] = {
        "cache_reuse_on": (base, {"cacheReuse": True}),
        "cache_reuse_off": (base, {"cacheReuse": False}),
        "alternatives_off": (base, {"cacheReuse": True, "alternatives": 0}),
        "overhead_5000_lines": (big_file(base, 5000), {"cacheReuse": True, "maxNewTokens": 1}),
    }
    if args.speculation:
        variants = {
            "speculative_on_prefetch_on": (base, {"speculative": True, "prefetch": True}),
            "speculative_off_prefetch_on": (base, {"speculative": False, "prefetch": True}),
            "speculative_on_prefetch_off": (base, {"speculative": True, "prefetch": False}),
            "speculative_off_prefetch_off": (base, {"speculative": False, "prefetch": False}),
        }
    engine = None
    if args.backend == "llama.cpp":  # local next to a real llama-server (f32 GGUF of the same weights), one run
        from tests.engines.llama_server import EMBEDDED_WEIGHTS, LLAMA_SERVER, convert_cached, launch

        engine = launch(LLAMA_SERVER, convert_cached(EMBEDDED_WEIGHTS, "f32"), log_dir=Path("build/llama-logs"),
                        parallel=1, ctx=4096, threads=args.engine_threads)
        variants = {
            "local": (base, {"backend": "local"}),
            "llama.cpp": (base, {"backend": "llama.cpp", "endpoint": engine.url, "requestTimeoutMs": 60_000}),
        }
    results: dict[str, list[dict[str, Any]]] = {key: [] for key in variants}
    for r in range(args.repeats):
        for key, (text, settings) in variants.items():
            settings = {"cacheReuse": True, "maxNewTokens": args.max_new_tokens, "alternatives": DEFAULT_ALTERNATIVES,
                        "speculative": DEFAULT_SPECULATIVE, "prefetch": DEFAULT_PREFETCH,
                        **settings}  # every key each time: a variant's setting must not leak into the next one
            counters = await stats(client)
            result = await replay(client, f"file:///bench/replay_{r}_{key}.py", text, settings, args.accept,
                                  args.think_ms)
            result.update(speculation_counters(counters, await stats(client)))
            results[key].append(result)
    final = await stats(client)
    if engine is not None:
        from tests.engines.llama_server import stop

        stop(engine)
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    return {
        "benchmark": "typing_replay", "machine": machine(), "model": final.get("model"),
        "context_file_lines": base.count("\n"), "results": results,
    }


def machine() -> dict[str, Any]:
    import os

    import torch

    cpu = "unknown"
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="checkpoint folder (default: embedded)")
    parser.add_argument("--dtype", help="server dtype setting (auto, float32, float16, bfloat16)")
    parser.add_argument("--quantization", help="server quantization setting (none, nf4)")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="server maxNewTokens (default 64)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--speculation", action="store_true",
                        help="only the speculative decoding / prefetch on-off variants")
    parser.add_argument("--accept", action="store_true",
                        help="the user accepts a suggestion that is exactly what comes next (TAB) and asks again")
    parser.add_argument("--think-ms", type=float, default=300.0, help="with --accept: pause before each accept")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--backend", choices=["local", "llama.cpp"], default="local",
                        help="llama.cpp: replay with the local engine and with a llama-server started here, one run")
    parser.add_argument("--engine-threads", type=int, default=2, help="llama-server -t (with --backend llama.cpp)")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
