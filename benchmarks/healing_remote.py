"""Token healing on a remote engine: a grammar vs the un-healed prompt vs PSM, at cursors inside a word.

    python -m benchmarks.healing_remote [--n 120] [--json OUT]

Why: with the cursor inside a word (``total = calc|``), the SPM prompt ends on a piece the model rarely saw
mid-word.  The server backs the word off and makes the answer start with it again (token healing): locally by
restricting the first tokens to pieces that agree with the removed text, on llama-server by a grammar.  An engine
without constrained decoding would get either the un-healed prompt or a PSM prompt.  This measures the three over
one real llama-server (built from source, the embedded model as an f32 GGUF), each variant on its own slot:

- ``grammar``: the healed SPM prompt, the removed text as a llama.cpp grammar (what the llama.cpp backend ships);
- ``unhealed``: the SPM prompt as it stands, ending mid-word;
- ``psm``: the PSM prompt (the prefix ends mid-word there too, but the answer starts after ``<MID>``).

Cursors: held-out code, this repository's Python files at a fixed commit (``repo_holes.holes``), on a code line, 2 or
more characters into a word of 4 or more; the line ends at the cursor (as while typing it).  Scored: the suggested
rest of the line equals the real one (exact, trailing spaces aside); the word being typed is completed right; the
keystroke's latency (the backend call) and what the engine prefilled.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks.repo_holes import DEFAULT_COMMIT, holes
from lsp_server.completion.prompts import build_prompt
from lsp_server.stats import nearest_rank
from model_backend.generation import GenerationRequest
from model_backend.remote import LlamaCppBackend, connect
from model_backend.tokenization import CodeLlamaTokenizer
from tests.engines.llama_server import EMBEDDED_WEIGHTS, LLAMA_SERVER, convert_cached, launch, stop

MODES = ("grammar", "unhealed", "psm")
WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{3,}")
PREFIX_CHARS, SUFFIX_CHARS = 3000, 1000  # about the server's default token budgets


def cursors(n: int, commit: str, seed: int = 1) -> list[dict[str, str]]:
    """``n`` cursors inside words: the text before it, after the line, the rest of the line, the rest of the word."""
    rng = random.Random(seed)
    out = []
    for hole in holes(commit, 4 * n):
        lines = hole.text.split("\n")
        line = lines[hole.row]
        words = [m for m in WORD.finditer(line) if m.start() > len(line) - len(line.lstrip())]
        if not words:
            continue
        word = rng.choice(words)
        cut = word.start() + rng.randint(2, len(word.group()) - 1)
        before = "\n".join(lines[:hole.row]) + "\n" + line[:cut]
        after = "\n" + "\n".join(lines[hole.row + 1:])
        out.append({"path": hole.path, "prefix": before[-PREFIX_CHARS:], "suffix": after[:SUFFIX_CHARS],
                    "rest": line[cut:], "word_rest": line[cut:word.end()]})
        if len(out) == n:
            break
    return out


def ask(backend: LlamaCppBackend, tok: CodeLlamaTokenizer, mode: str, c: dict[str, str]) -> dict[str, Any]:
    """One suggestion for the cursor ``c`` in ``mode``: its first line, as the user would see it."""
    healed = ""
    if mode == "grammar":
        prompt = build_prompt(tok, c["prefix"], c["suffix"], "spm")
        ids, healed = prompt.ids, prompt.healed
    elif mode == "unhealed":
        ids = tok.spm_ids(c["prefix"], c["suffix"])
    else:
        ids = tok.psm_ids(c["prefix"], c["suffix"])

    def line_done(out: list[int]) -> bool:
        return "\n" in tok.decode_middle(out)[len(healed):]

    t0 = time.perf_counter()
    r = backend.generate(GenerationRequest(prompt_ids=ids, max_new_tokens=24, stop_ids=tok.stop_ids(),
                                           should_stop=line_done, text_prefix=healed))
    ms = (time.perf_counter() - t0) * 1e3
    text = tok.decode_middle(r.ids)
    if healed:
        text = text[len(healed):] if text.startswith(healed) else ""  # the grammar makes this never happen
    first = text.split("\n")[0]
    return {"ms": ms, "prefilled": r.prefilled_tokens, "exact": first.rstrip() == c["rest"].rstrip(),
            "word": first.startswith(c["word_rest"]) and not first[len(c["word_rest"]):][:1].isidentifier(),
            "healed_chars": len(healed), "text": first}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=120)
    parser.add_argument("--commit", default=DEFAULT_COMMIT)
    parser.add_argument("--threads", type=int, default=2, help="llama-server threads")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    tok = CodeLlamaTokenizer(EMBEDDED_WEIGHTS / "tokenizer.model")
    points = cursors(args.n, args.commit)
    server = launch(LLAMA_SERVER, convert_cached(EMBEDDED_WEIGHTS, "f32"), log_dir=Path("build/llama-logs"),
                    parallel=len(MODES), ctx=4096 * len(MODES), threads=args.threads)
    rows: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
    try:
        backends = {}
        for slot, mode in enumerate(MODES):
            backend = connect("llama.cpp", server.url, tok, "embedded", timeout_ms=120_000)
            assert isinstance(backend, LlamaCppBackend)
            backend.check()
            backend.slot = slot  # each variant keeps its own prompt cache
            backends[mode] = backend
        for i, c in enumerate(points):
            for mode in MODES[i % len(MODES):] + MODES[:i % len(MODES)]:
                rows[mode].append(ask(backends[mode], tok, mode, c))
    finally:
        stop(server)
    report: dict[str, Any] = {"benchmark": "healing_remote", "commit": args.commit, "cursors": len(points),
                              "engine": "llama-server, embedded model as f32 GGUF", "modes": {}}
    for mode, got in rows.items():
        ms = [r["ms"] for r in got]
        report["modes"][mode] = {
            "exact_line": round(sum(r["exact"] for r in got) / len(got), 3),
            "word_completed": round(sum(r["word"] for r in got) / len(got), 3),
            "empty": round(sum(not r["text"].strip() for r in got) / len(got), 3),
            "p50_ms": round(nearest_rank(ms, 50), 1), "p95_ms": round(nearest_rank(ms, 95), 1),
            "prefilled_mean": round(statistics.mean(r["prefilled"] for r in got), 1),
        }
    report["grammar_healed_chars_mean"] = round(statistics.mean(r["healed_chars"] for r in rows["grammar"]), 2)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
