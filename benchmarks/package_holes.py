"""A second execution-based benchmark on code nobody tuned to: one-line holes in more-itertools, run by its doctests.

Why: HumanEval-infilling is one set; a change tuned on it may fit its quirks.  This one is a published,
permissively licensed package that is neither in the embedded model's training corpus
(``model_backend/embedded/CORPUS.md``: more-itertools is not among its sources, and the copies that pip and
setuptools vendor were dropped with every ``_vendor`` folder) nor in this repository.  No published infilling
benchmark ships offline in a pip package (the PyPI list has none with data), so this one is built the way
``benchmarks/repo_holes.py`` was, but scored by execution.

* Source: more-itertools 11.2.1 (MIT, https://pypi.org/project/more-itertools/), the wheel
  ``more_itertools-11.2.1-py3-none-any.whl`` (sha256 ``35a7377e...``), fetched once with
  ``pip download --no-deps --only-binary=:all: more-itertools==11.2.1`` into ``build/more-itertools/`` (ignored
  by git) on the first run, and checked against that hash on every run.
* Holes: for every public function of ``more.py`` and ``recipes.py`` whose docstring has doctests, the lines
  its own doctests execute (traced once, in process) that hold one whole simple statement or a one-line
  ``if``/``for``/``while``/``with``/``elif`` header, at most 90 characters; two per function, drawn with
  ``random.Random(seed)`` (``--seed``, 0), the functions in a seeded order: the same set on every run.
* Editor state: the hole's line left empty with the cursor at its start (as in repo_holes and HumanEval's
  single-line layout); the suggestion is what the server shows there (``CompletionCore``, as
  ``humaneval_infilling`` does).
* Passed: the package with the suggestion in that line imports and the function's own doctests all pass
  (``doctest``, run in a sandboxed child process by ``humaneval_infilling.execute``).  ``baseline``: the empty
  suggestion; ``canonical``: the original line (checks the harness; should be 100%).
* ``--suggestions N``: also asks as an editor does when the user cycles (``generate(want=N)``) and reports
  whether any of the N items passes, whether the second passes, and how many first items differ from the
  single-suggestion answer (must be 0), and whether the second item passes with the extra items ranked by the
  model's log-probability (what the server does) and as decoded (what the ranking is compared with).
* ``--set humaneval``: the same measures on HumanEval single-line infilling (its first ``--limit`` problems).

    python -m benchmarks.package_holes [--limit N] [--suggestions 3] [--set more-itertools|humaneval] [--threads 1]
        [--wheel PATH] [--json benchmarks/results/package_holes_cpu.json]
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import doctest
import functools
import json
import os
import random
import shlex
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.humaneval_infilling import code_version, execute_all, machine, make_core
from lsp_server.completion.core import CompletionCore
from lsp_server.completion.documents import Document
from lsp_server.stats import nearest_rank

REPO = Path(__file__).resolve().parent.parent
WHEEL_NAME = "more_itertools-11.2.1-py3-none-any.whl"
WHEEL_SHA256 = "35a7377edd1dd6608dcb2cdf534ded55ea32d49448875ad042cd3f879fb1ded0"
DEFAULT_WHEEL = REPO / "build" / "more-itertools" / WHEEL_NAME
MODULES = ("more", "recipes")
MAX_CHARS = 90
PER_FUNCTION = 2
HEADERS = (ast.If, ast.For, ast.While, ast.With)

# Runs in the sandbox child (cwd: a fresh folder): the package with the hole filled, then one function's doctests.
PROGRAM = """
import doctest, sys
sys.path.insert(0, {root!r})
import more_itertools.{module} as module
finder = doctest.DocTestFinder(recurse=False)
runner = doctest.DocTestRunner(verbose=False)
tests = finder.find(getattr(module, {name!r}), {name!r}, module=module, globs=vars(module).copy())
for test in tests:
    runner.run(test, out=lambda s: None)
if runner.failures or not runner.tries:
    raise SystemExit(1)
"""


@dataclass(frozen=True)
class Hole:
    module: str  # "more" or "recipes"
    function: str
    row: int  # 0-based line emptied
    target: str  # the line that was there


def fetch_wheel(wheel: Path) -> None:
    """Download the pinned wheel from PyPI into ``wheel``'s folder (the first run only; its hash is checked on use)."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "more-itertools==11.2.1",
           "-d", str(wheel.parent)]
    if subprocess.run(cmd, check=False).returncode != 0 or not wheel.is_file():
        raise SystemExit(f"{wheel} missing and could not be downloaded: {' '.join(cmd)}")


def read_package(wheel: Path) -> dict[str, str]:
    """``{relative path: text}`` of the package's files from the wheel (checked against its pinned hash)."""
    import hashlib

    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise SystemExit(f"{wheel}: sha256 {digest}, expected {WHEEL_SHA256} (more-itertools 11.2.1)")
    with zipfile.ZipFile(wheel) as z:
        return {n: z.read(n).decode("utf-8") for n in z.namelist() if n.startswith("more_itertools/")}


def write_package(files: dict[str, str], root: Path, changed: tuple[str, str] | None = None) -> None:
    """The package under ``root``, with ``changed = (path, text)`` replacing one file."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(changed[1] if changed and changed[0] == name else text, encoding="utf-8")


def executed_lines(root: Path, module: str, names: list[str]) -> dict[str, set[int]]:
    """Per function: the 1-based lines of its module that its own doctests execute (a trace, in process)."""
    sys.path.insert(0, str(root))
    try:
        mod = __import__(f"more_itertools.{module}", fromlist=["_"])
        filename = mod.__file__
        out: dict[str, set[int]] = {}
        for name in names:
            hit: set[int] = set()

            def tracer(frame: Any, event: str, arg: Any, hit: set[int] = hit) -> Any:
                if frame.f_code.co_filename == filename and event == "line":
                    hit.add(frame.f_lineno)
                return tracer

            runner = doctest.DocTestRunner(verbose=False)
            finder = doctest.DocTestFinder(recurse=False)
            old = sys.gettrace()
            sys.settrace(tracer)
            try:
                for test in finder.find(getattr(mod, name), name, module=mod, globs=vars(mod).copy()):
                    runner.run(test, out=lambda s: None)
            finally:
                sys.settrace(old)
            out[name] = hit if not runner.failures else set()
        return out
    finally:
        sys.path.remove(str(root))
        for key in [k for k in sys.modules if k == "more_itertools" or k.startswith("more_itertools.")]:
            del sys.modules[key]


def one_line_rows(func: ast.FunctionDef) -> set[int]:
    """1-based lines of ``func`` that hold a whole simple statement or a one-line block header."""
    rows = set()
    body = func.body[1:] if func.body and isinstance(func.body[0], ast.Expr) \
        and isinstance(func.body[0].value, ast.Constant) else func.body  # skip the docstring
    for top in body:
        for node in ast.walk(top):
            if isinstance(node, ast.stmt) and not isinstance(node, ast.FunctionDef | ast.ClassDef):
                simple = not hasattr(node, "body") and node.lineno == node.end_lineno
                header = isinstance(node, HEADERS) and node.body and node.body[0].lineno > node.lineno
                if simple or header:
                    rows.add(node.lineno)
    return rows


def build_holes(files: dict[str, str], seed: int = 0) -> list[Hole]:
    """``PER_FUNCTION`` holes per function with doctests (see the module docstring), in a seeded order."""
    rng = random.Random(seed)
    holes: list[Hole] = []
    with tempfile.TemporaryDirectory(prefix="package-holes-") as tmp:
        write_package(files, Path(tmp))
        for module in MODULES:
            text = files[f"more_itertools/{module}.py"]
            lines = text.split("\n")
            tree = ast.parse(text)
            funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")
                     and ">>>" in (ast.get_docstring(n) or "")]
            traced = executed_lines(Path(tmp), module, [f.name for f in funcs])
            for func in funcs:
                rows = sorted(r for r in one_line_rows(func) & traced[func.name]
                              if len(lines[r - 1]) <= MAX_CHARS and lines[r - 1].strip())
                for row in rng.sample(rows, min(PER_FUNCTION, len(rows))):
                    holes.append(Hole(module, func.name, row - 1, lines[row - 1]))
    rng.shuffle(holes)
    return holes


@dataclass
class Row:
    name: str  # "module.function:row" or a HumanEval task id
    target: str  # the line that was there
    suggestion: str
    passed: bool
    status: str
    exact: bool
    empty_passed: bool
    canonical_passed: bool
    ms: float
    tried: int
    items: list[str]  # with --suggestions: what an editor cycles through, extra items in decode order
    logprobs: list[float]  # the model's log-probability of each extra item
    items_passed: list[bool]
    first_differs: bool  # the cycling answer's first item is not the single-suggestion answer (must never be)

    def second_passes(self, by_logprob: bool) -> bool:
        """Whether the item an editor shows second passes: the extra items by log-probability, or as decoded."""
        if len(self.items) < 2:
            return False
        extra = list(range(1, len(self.items)))
        if by_logprob:
            extra.sort(key=lambda i: -self.logprobs[i - 1])
        return self.items_passed[extra[0]]


def hole_text(files: dict[str, str], hole: Hole, line: str) -> str:
    lines = files[f"more_itertools/{hole.module}.py"].split("\n")
    return "\n".join([*lines[:hole.row], line, *lines[hole.row + 1:]])


def hole_programs(files: dict[str, str], tmp: Path, hole: Hole, lines: Sequence[str]) -> list[str]:
    """For each line in the hole: a package copy under ``tmp`` and the program that runs the function's doctests."""
    out = []
    for line in lines:
        root = tmp / str(len(list(tmp.iterdir())))
        write_package(files, root, (f"more_itertools/{hole.module}.py", hole_text(files, hole, line)))
        out.append(PROGRAM.format(root=str(root), module=hole.module, name=hole.function))
    return out


def suggest(core: CompletionCore, doc: Document, offset: int, want: int) -> tuple[list[str], list[float], float, int]:
    """(items, the extra items' log-probabilities, ms, answers decoded); ``items[0]`` is what the server shows.

    The extra items come in decode order (``rank_by_logprob`` off), so one decode scores both orders."""
    t0 = time.perf_counter()
    core.rank_by_logprob = False
    try:
        outcome = core.generate(core.prepare(doc, offset, invoked=want > 1), want=want)
    finally:
        core.rank_by_logprob = True
    ms = (time.perf_counter() - t0) * 1e3
    return [outcome.text or "", *outcome.others], list(outcome.other_logprobs), ms, outcome.tried


@dataclass(frozen=True)
class Case:
    """One hole, benchmark-neutral: where to ask, and how to turn a line into a program that tests it."""

    name: str
    doc: Document
    offset: int
    target: str
    programs: Callable[[Sequence[str]], list[str]]  # one program per line to try in the hole


def evaluate(core: CompletionCore, cases: Sequence[Case], suggestions: int, timeout_s: float) -> list[Row]:
    """Suggest for every case (sequentially), then execute everything (two processes at a time)."""
    made = []
    for i, case in enumerate(cases, 1):
        [first], _, ms, tried = suggest(core, case.doc, case.offset, 1)
        items, logprobs = [first], list[float]()
        if suggestions > 1:
            items, logprobs, _, _ = suggest(core, case.doc, case.offset, suggestions)
        made.append((first, ms, tried, items, logprobs))
        if i % 25 == 0:
            print(f"  {i}/{len(cases)}", file=sys.stderr, flush=True)
    sources = [src for case, (first, _, _, items, _) in zip(cases, made, strict=True)
               for src in case.programs([first, "", case.target, *items])]
    runs = iter(execute_all(sources, timeout_s))
    rows = []
    for case, (first, ms, tried, items, logprobs) in zip(cases, made, strict=True):
        run, empty, canon = next(runs), next(runs), next(runs)
        items_passed = [next(runs).passed for _ in items]
        rows.append(Row(case.name, case.target, first, run.passed, run.status, first.rstrip() == case.target.rstrip(),
                        empty.passed, canon.passed, round(ms, 1), tried, items, logprobs, items_passed,
                        items[0] != first))
    return rows


def package_cases(files: dict[str, str], holes: Sequence[Hole], tmp: Path) -> list[Case]:
    cases = []
    for hole in holes:
        text = hole_text(files, hole, "")
        offset = sum(len(line) + 1 for line in text.split("\n")[:hole.row])
        doc = Document(f"file:///more_itertools/{hole.module}.py", "python", 0, text)
        cases.append(Case(f"{hole.module}.{hole.function}:{hole.row + 1}", doc, offset, hole.target,
                          functools.partial(hole_programs, files, tmp, hole)))
    return cases


def _humaneval_programs(problem: Any, lines: Sequence[str]) -> list[str]:
    from benchmarks import humaneval_infilling as he

    return [he.program(problem, line) for line in lines]


def humaneval_cases(limit: int | None) -> list[Case]:
    """HumanEval single-line infilling, as ``benchmarks.humaneval_infilling`` lays it out (an empty line)."""
    from benchmarks import humaneval_infilling as he

    cases = []
    for p in he.load_problems(he.DEFAULT_DATA, "single", limit):
        text, offset = he.editor_state(p)
        doc = Document(f"file:///humaneval/{p.task_id.replace('/', '_')}.py", "python", 0, text)
        cases.append(Case(p.task_id, doc, offset, p.canonical_solution.rstrip("\n"),
                          functools.partial(_humaneval_programs, p)))
    return cases


def summarize(rows: Sequence[Row]) -> dict[str, Any]:
    n = len(rows)
    ms = [r.ms for r in rows]
    several = [r for r in rows if len(r.items) > 1]
    return {
        "n": n, "pass_at_1": sum(r.passed for r in rows) / n, "exact_match": sum(r.exact for r in rows) / n,
        "empty_rate": sum(not r.suggestion for r in rows) / n,
        "baseline_pass_at_1": sum(r.empty_passed for r in rows) / n,
        "canonical_pass_at_1": sum(r.canonical_passed for r in rows) / n,
        "passed_not_by_empty": sum(r.passed and not r.empty_passed for r in rows),
        "latency_ms_p50": nearest_rank(ms, 50), "latency_ms_p95": nearest_rank(ms, 95),
        "retried_rate": sum(r.tried > 1 for r in rows) / n,
        "first_differs": sum(r.first_differs for r in rows),
        "mean_items": sum(len(r.items) for r in rows) / n,
        "with_several_items": len(several),
        "any_item_passes": sum(any(r.items_passed) for r in rows) / n,
        "second_passes_by_logprob": sum(r.second_passes(True) for r in several),
        "second_passes_as_decoded": sum(r.second_passes(False) for r in several),
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--wheel", type=Path, default=DEFAULT_WHEEL, help=f"the {WHEEL_NAME} file")
    ap.add_argument("--limit", type=int, help="only the first N holes (of the seeded order)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--suggestions", type=int, default=1, help="also ask for N items, as when the user cycles")
    ap.add_argument("--set", choices=("more-itertools", "humaneval"), default="more-itertools",
                    help="humaneval: the same measures on HumanEval single-line infilling (ranking checked on both)")
    ap.add_argument("--fim-mode", default="auto", choices=("psm", "spm", "auto"))
    ap.add_argument("--model", help="checkpoint folder (default: the embedded model)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0 = PyTorch's default)")
    ap.add_argument("--timeout", type=float, default=5.0, help="wall-clock seconds per execution")
    ap.add_argument("--json", type=Path, help="write the summary and every row here")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.set == "more-itertools" and not args.wheel.is_file():
        fetch_wheel(args.wheel)
    core = make_core(args.fim_mode, args.model, threads=args.threads)
    core.apply_settings(dataclasses.replace(core.settings, suggestions=max(1, args.suggestions)))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="package-holes-run-") as tmp:
        if args.set == "humaneval":
            cases = humaneval_cases(args.limit)
        else:
            files = read_package(args.wheel)
            cases = package_cases(files, build_holes(files, args.seed)[:args.limit], Path(tmp))
        rows = evaluate(core, cases, args.suggestions, args.timeout)
    summary = {**summarize(rows), "wall_s": round(time.perf_counter() - t0, 1)}
    print(json.dumps(summary, indent=1))
    if args.json:
        report = {"benchmark": "package_holes", "set": args.set, "package": "more-itertools 11.2.1 (MIT)",
                  "wheel_sha256": WHEEL_SHA256, "seed": args.seed, "suggestions": args.suggestions,
                  "command": shlex.join(["python", "-m", "benchmarks.package_holes",
                                         *(argv if argv is not None else sys.argv[1:])]),
                  "machine": machine(), "code": code_version(), "summary": summary,
                  "rows": [asdict(r) for r in rows]}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
