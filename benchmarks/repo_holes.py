"""A held-out completion check: one-line holes cut from this repository's own Python code at a fixed commit.

Why beside HumanEval: a pipeline change tuned on HumanEval alone may fit its quirks.  This project's code is
neither in the embedded model's training corpus (the standard library and PyPI packages, see
``model_backend/embedded/CORPUS.md``) nor evaluation data, so a change that helps both is likelier to help a
user.  Keep a change only if it does not hurt here.

    python -m benchmarks.repo_holes [--commit REV] [--n 300] [--fim-mode auto] [--threads 1] [--json OUT]

Holes: indented code lines (no comment or string openers, at most 90 characters) of the ``.py`` files under
``lsp_server/``, ``model_backend/``, ``benchmarks/`` and ``tests/`` at ``REV``, read with ``git show`` so that
edits in the working tree never move the set; at most 6 per file, drawn with a fixed seed.  The hole's line is
left empty with the cursor at its start (as an editor user has it before typing), and the suggestion is what
the server would show there.  Reported: exact match (``rstrip``), exact match ignoring indentation, the empty
rate, the share of non-empty suggestions that add a tree-sitter syntax error, and the latency.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.humaneval_infilling import code_version, make_core
from lsp_server.completion.core import CompletionCore
from lsp_server.completion.documents import Document
from lsp_server.completion.parsing import error_nodes, python_error
from lsp_server.stats import nearest_rank

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_COMMIT = "c50b6f8"  # the code as it stood when this check was written: the set never changes
FOLDERS = ("lsp_server", "model_backend", "benchmarks", "tests")
PER_FILE = 6
MAX_CHARS = 90


@dataclass(frozen=True)
class Hole:
    path: str
    row: int  # 0-based line cut out
    text: str  # the file at the commit


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def holes(commit: str, n: int, seed: int = 0) -> list[Hole]:
    """``n`` holes from the commit's Python files, the same ones on every run."""
    rng = random.Random(seed)
    out: list[Hole] = []
    for path in sorted(git("ls-tree", "-r", "--name-only", commit, "--", *FOLDERS).splitlines()):
        if not path.endswith(".py"):
            continue
        text = git("show", f"{commit}:{path}")
        lines = text.split("\n")
        rows = [i for i, line in enumerate(lines) if i > 0 and line.startswith("    ") and line.strip()
                and not line.strip().startswith(("#", '"""', "'''")) and len(line) <= MAX_CHARS]
        rng.shuffle(rows)
        out += [Hole(path, row, text) for row in rows[:PER_FILE]]
    rng.shuffle(out)
    return out[:n]


def complete(core: CompletionCore, hole: Hole) -> dict[str, Any]:
    """The suggestion on the emptied line, scored against the line that was there."""
    lines = hole.text.split("\n")
    target = lines[hole.row]
    prefix = "\n".join(lines[: hole.row]) + "\n"
    suffix = "\n" + "\n".join(lines[hole.row + 1:])
    doc = Document(f"file:///repo/{hole.path}", "python", 0, prefix + suffix)
    t0 = time.perf_counter()
    outcome = core.generate(core.prepare(doc, len(prefix)))
    ms = (time.perf_counter() - t0) * 1e3
    suggestion = outcome.text or ""
    adds_error = bool(suggestion) and error_nodes("python", prefix + target + suffix) == 0 \
        and error_nodes("python", prefix + suggestion + suffix) > 0
    adds_compile_error = bool(suggestion) and python_error(prefix + target + suffix) is None \
        and python_error(prefix + suggestion + suffix) is not None
    return {"path": hole.path, "row": hole.row, "target": target, "suggestion": suggestion, "raw": outcome.raw,
            "exact": suggestion.rstrip() == target.rstrip(),
            "exact_ignoring_indent": suggestion.strip() == target.strip(),
            "empty": not suggestion, "adds_syntax_error": adds_error, "adds_compile_error": adds_compile_error,
            "tried": outcome.tried, "ms": round(ms, 2)}


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    shown = [r for r in rows if not r["empty"]]
    ms = [r["ms"] for r in rows]
    return {
        "n": n, "exact_match": sum(r["exact"] for r in rows) / n,
        "exact_ignoring_indent": sum(r["exact_ignoring_indent"] for r in rows) / n,
        "empty_rate": (n - len(shown)) / n,
        "syntax_error_rate": sum(r["adds_syntax_error"] for r in shown) / max(1, len(shown)),
        "compile_error_rate": sum(r["adds_compile_error"] for r in shown) / max(1, len(shown)),
        "retried_rate": sum(r["tried"] > 1 for r in rows) / n,
        "latency_ms_p50": round(nearest_rank(ms, 50), 1), "latency_ms_p95": round(nearest_rank(ms, 95), 1),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--commit", default=DEFAULT_COMMIT, help=f"holes from this commit (default {DEFAULT_COMMIT})")
    parser.add_argument("--n", type=int, default=300, help="number of holes (default 300)")
    parser.add_argument("--fim-mode", default="auto", choices=("psm", "spm", "auto"))
    parser.add_argument("--model", help="checkpoint folder (default: the embedded model)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0 = PyTorch's default)")
    parser.add_argument("--alternatives", type=int, help="answers to try when one does not fit (default: the server's)")
    parser.add_argument("--json", type=Path, help="write the summary and every row here")
    args = parser.parse_args(argv)
    chosen = holes(args.commit, args.n)
    core = make_core(args.fim_mode, model=args.model, threads=args.threads, alternatives=args.alternatives)
    rows = [complete(core, hole) for hole in chosen]
    report = {"benchmark": "repo_holes", "holes_from": args.commit, "fim_mode": args.fim_mode,
              "alternatives": core.settings.alternatives,
              "code": code_version(), "summary": summarize(rows), "rows": rows}
    print(json.dumps(report["summary"], indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()
