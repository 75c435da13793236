"""Does cross-file context help?  Holes cut in a small multi-file project, completed with it on and off.

The project is ``benchmarks/repo_context`` (written for this benchmark): library modules whose names,
argument orders and constants cannot be guessed, and modules that use them.  A *hole* is a one-line
statement inside a function that uses a symbol defined in another module of the project: an imported name
(``tariff_cents``), a module's attribute (``units.grams_from_pounds``), or a field or method of a class from
another module (``ledger.book``, ``sku.unit_cents``).  Lines whose text occurs twice in their file are
skipped (the local prefix would give the answer away).  The editor state is the file with that line
emptied down to its indentation, the cursor after the indentation, the workspace folder = the project
(the other files are read from disk, none is open), and the expected middle = the rest of the line.

The server's own pipeline makes the suggestion (``CompletionCore.prepare`` + ``generate``, greedy, all
post-processing), with cross-file context off, on as code (``# Path:`` marker, then the definitions as
code), on as comments (every line commented out), and on as code with twice the budget (1024 tokens).
Only the first line of a suggestion is compared.

* exact match: the suggestion equals the expected middle (surrounding whitespace ignored);
* right symbol: every cross-file symbol of the expected line appears (as a whole word) in the suggestion;
* symbols in prompt: every such symbol appears in the cross-file snippets (did retrieval find them?);
* edit similarity: ``difflib.SequenceMatcher`` ratio, a softer measure for a small model;
* wins / losses against ``off``, hole by hole, for exact match and right symbol;
* latency: ``prepare`` and ``generate`` p50, and ``prepare`` while typing a line character by character in
  a file that imports five project modules (first keystroke excluded), with the cross-file part alone,
  and how often the cross-file header changed between keystrokes (each change costs a re-prefill).

    python -m benchmarks.crossfile_eval [--model DIR] [--limit N] [--json benchmarks/results/crossfile_cpu.json]
"""

from __future__ import annotations

import argparse
import ast
import difflib
import itertools
import json
import platform
import re
import shlex
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lsp_server.completion.core import CompletionCore
from lsp_server.completion.crossfile import Style
from lsp_server.completion.documents import Document
from lsp_server.settings import Settings, parse_settings

PROJECT = Path(__file__).resolve().parent / "repo_context"
# name -> (cross-file context on, layout, crossFileTokens)
VARIANTS: dict[str, tuple[bool, str, int]] = {
    "off": (False, "code", 512), "code": (True, "code", 512), "comment": (True, "comment", 512),
    "code_1024": (True, "code", 1024),  # this tokenizer's pieces are short: 512 of them hold ~2/3 of the symbols
}
TYPED_FILE, TYPED_AFTER, TYPED_LINE = "depot/fulfilment.py", "    picked = pick(order, catalog)\n", (
    "    zone = zone_of(order.postcode)")
SIMPLE = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Return, ast.Expr, ast.Raise)
WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Hole:
    """One line to complete from ``column`` on."""

    kind: str  # "line": cursor after the indentation; "symbol": cursor right before the first cross-file symbol
    path: str  # relative to the project
    line: int  # 0-based
    column: int  # the cursor's column; the line's text before it stays in the editor
    text: str  # the whole line
    symbols: tuple[str, ...]  # the cross-file names the expected middle uses

    @property
    def middle(self) -> str:
        return self.text[self.column :].strip()


# -- holes -------------------------------------------------------------------------------------------
def module_name(path: Path) -> str:
    rel = path.relative_to(PROJECT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PROJECT.rglob("*.py"))}


def class_members(tree: ast.Module) -> set[str]:
    """Field and method names of the classes a module defines."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    names.add(item.name)
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    names.add(item.target.id)
    return names


def imported_names(path: Path, tree: ast.Module, modules: dict[str, Path]) -> tuple[set[str], set[str]]:
    """(names imported from project modules, local aliases of project modules)."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    names: set[str] = set()
    aliases: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base]).strip(".")
            if base not in modules:
                continue
            for alias in node.names:
                target = aliases if f"{base}.{alias.name}" in modules else names
                target.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules or alias.name.split(".")[0] in modules:
                    aliases.add(alias.asname or alias.name.split(".")[0])
    return names, aliases


def line_symbols(stmt: ast.stmt, names: set[str], aliases: set[str], members: set[str]) -> list[tuple[int, str]]:
    """(column, name) of the cross-file symbols a statement uses, in source order."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(stmt):
        if isinstance(node, ast.Name) and node.id in names:
            found.append((node.col_offset, node.id))
        elif isinstance(node, ast.Attribute) and (
            node.attr in members or (isinstance(node.value, ast.Name) and node.value.id in aliases)
        ):
            found.append(((node.end_col_offset or 0) - len(node.attr), node.attr))
    return sorted(found)


def find_holes() -> list[Hole]:
    """Two holes per one-line statement in a function body that uses another module's symbol (unique lines)."""
    modules = project_modules()
    trees = {m: ast.parse(p.read_text()) for m, p in modules.items()}
    holes: list[Hole] = []
    for module, path in modules.items():
        lines = path.read_text().split("\n")
        names, aliases = imported_names(path, trees[module], modules)
        members = set().union(*(class_members(t) for m, t in trees.items() if m != module)) - class_members(
            trees[module])
        for stmt in _body_statements(trees[module]):
            text = lines[stmt.lineno - 1]
            symbols = line_symbols(stmt, names, aliases, members)
            if stmt.lineno != stmt.end_lineno or not symbols or lines.count(text) > 1:
                continue
            rel, indent = str(path.relative_to(PROJECT)), len(text) - len(text.lstrip())
            for kind, column in (("line", indent), ("symbol", symbols[0][0])):
                used = tuple(dict.fromkeys(name for col, name in symbols if col >= column))
                holes.append(Hole(kind, rel, stmt.lineno - 1, column, text, used))
    return sorted(holes, key=lambda h: (h.kind, h.path, h.line))


def _body_statements(tree: ast.Module) -> Iterator[ast.stmt]:
    """Simple statements inside functions (not defs, not compound statements' headers)."""
    for func in ast.walk(tree):
        if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            for stmt in ast.walk(func):
                docstring = isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
                if isinstance(stmt, SIMPLE) and not docstring:
                    yield stmt


# -- running -----------------------------------------------------------------------------------------
def editor_state(hole: Hole) -> tuple[Document, int]:
    """The file with the hole's line cut at the cursor column, and the cursor there."""
    path = PROJECT / hole.path
    lines = path.read_text().split("\n")
    lines[hole.line] = hole.text[: hole.column]
    text = "\n".join(lines)
    offset = sum(len(line) + 1 for line in lines[: hole.line]) + hole.column
    return Document(path.as_uri(), "python", 1, text), offset


def configure(core: CompletionCore, base: dict[str, Any], variant: str) -> Style:
    """Settings for ``variant``; returns how its cross-file definitions are laid out (``prepare`` takes it)."""
    on, style, tokens = VARIANTS[variant]
    settings, problems = parse_settings({**base, "crossFileContext": on, "crossFileTokens": tokens}, Settings())
    assert not problems, problems
    core.apply_settings(settings)
    core.crossfile.set_roots([PROJECT])
    return "comment" if style == "comment" else "code"


def run_holes(core: CompletionCore, holes: list[Hole], base: dict[str, Any], variant: str) -> list[dict[str, Any]]:
    """One row per hole: the suggestion, the scores, the latencies."""
    style = configure(core, base, variant)
    for _ in range(3):  # warm the parsed-file cache (a cold start reads at most 4 files per request)
        for hole in holes:
            core.crossfile.snippets(*editor_state(hole))
    rows = []
    for hole in holes:
        doc, offset = editor_state(hole)
        t0 = time.perf_counter()
        prep = core.prepare(doc, offset, crossfile_style=style)
        t1 = time.perf_counter()
        outcome = core.generate(prep)
        t2 = time.perf_counter()
        suggestion = (outcome.text or "").split("\n")[0].strip()
        words = set(WORD.findall(suggestion))
        shown = set(WORD.findall("".join(s.text for s in prep.snippets)))
        rows.append({
            "hole": f"{hole.kind} {hole.path}:{hole.line + 1}:{hole.column + 1}", "kind": hole.kind,
            "expected": hole.middle, "suggestion": suggestion,
            "exact": suggestion == hole.middle, "symbol": all(s in words for s in hole.symbols),
            "in_prompt": all(s in shown for s in hole.symbols),
            "similarity": round(difflib.SequenceMatcher(None, suggestion, hole.middle).ratio(), 3),
            "prepare_ms": (t1 - t0) * 1e3, "generate_ms": (t2 - t1) * 1e3,
            "prompt_tokens": len(prep.prompt.ids), "snippets": len(prep.snippets),
        })
    return rows


def summarise(rows: list[dict[str, Any]], off: list[dict[str, Any]] | None) -> dict[str, Any]:
    n = len(rows)
    summary: dict[str, Any] = {
        "holes": n,
        "exact_match": round(sum(r["exact"] for r in rows) / n, 3),
        "right_symbol": round(sum(r["symbol"] for r in rows) / n, 3),
        "symbols_in_prompt": round(sum(r["in_prompt"] for r in rows) / n, 3),
        "edit_similarity": round(statistics.mean(r["similarity"] for r in rows), 3),
        "empty": round(sum(not r["suggestion"] for r in rows) / n, 3),
        "prompt_tokens_mean": round(statistics.mean(r["prompt_tokens"] for r in rows), 1),
        "snippets_mean": round(statistics.mean(r["snippets"] for r in rows), 2),
        "prepare_ms_p50": round(statistics.median(r["prepare_ms"] for r in rows), 2),
        "generate_ms_p50": round(statistics.median(r["generate_ms"] for r in rows), 1),
    }
    if off:
        for key in ("exact", "symbol"):
            summary[f"{key}_wins_losses"] = [sum(r[key] and not o[key] for r, o in zip(rows, off, strict=True)),
                                             sum(o[key] and not r[key] for r, o in zip(rows, off, strict=True))]
    return summary


def typing_latency(core: CompletionCore, base: dict[str, Any], variant: str) -> dict[str, Any]:
    """``prepare`` per keystroke while typing ``TYPED_LINE`` into a file importing five project modules."""
    style = configure(core, base, variant)
    path = PROJECT / TYPED_FILE
    text = path.read_text()
    at = text.index(TYPED_AFTER) + len(TYPED_AFTER)
    doc = Document(path.as_uri(), "python", 1, text[:at] + "\n" + text[at:])
    totals, crossfile_ms, headers = [], [], []
    for i, ch in enumerate(TYPED_LINE):
        line = doc.line_of(at)
        doc.apply_change((line, i, line, i), ch, i + 2)
        t0 = time.perf_counter()
        prep = core.prepare(doc, at + i + 1, crossfile_style=style)
        totals.append((time.perf_counter() - t0) * 1e3)
        crossfile_ms.append(prep.crossfile_ms)
        headers.append(tuple(prep.snippets))
    changes = sum(a != b for a, b in itertools.pairwise(headers[1:]))
    return {"keystrokes": len(totals), "prepare_ms_first": round(totals[0], 2),
            "prepare_ms_p50": round(statistics.median(totals[1:]), 3),
            "prepare_ms_p95": round(sorted(totals[1:])[int(0.95 * (len(totals) - 2))], 3),
            "crossfile_ms_p50": round(statistics.median(crossfile_ms[1:]), 3),
            "header_changes_after_first": changes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="checkpoint folder (default: the embedded model)")
    parser.add_argument("--limit", type=int, help="only the first N holes")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    holes = find_holes()[: args.limit]
    base: dict[str, Any] = {"timeBudgetMs": 60_000, "model": args.model}
    core = CompletionCore(parse_settings(base)[0])
    core.load()
    machine = f"{platform.machine()} {platform.processor()} python {platform.python_version()}"
    results: dict[str, Any] = {"command": "python -m benchmarks.crossfile_eval " + shlex.join(argv or sys.argv[1:]),
                               "machine": machine,
                               "model": args.model or "embedded", "holes": [asdict(h) for h in holes],
                               "summary": {}, "rows": {}, "typing": {}}
    for variant in ["off", *(v for v in args.variants if v != "off")]:
        rows = run_holes(core, holes, base, variant)
        results["rows"][variant] = rows
        for kind in ("all", "line", "symbol"):
            mine = [r for r in rows if kind in ("all", r["kind"])]
            off = [r for r in results["rows"]["off"] if kind in ("all", r["kind"])]
            results["summary"].setdefault(kind, {})[variant] = summarise(mine, None if variant == "off" else off)
            print(kind, variant, json.dumps(results["summary"][kind][variant]), flush=True)
    for variant in ("off", "code"):
        results["typing"][variant] = typing_latency(core, base, variant)
        print("typing", variant, json.dumps(results["typing"][variant]), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
