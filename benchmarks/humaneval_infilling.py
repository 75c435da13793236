"""HumanEval-infilling through the server's own pipeline: pass@1, exact match, syntax errors, latency.

What is measured.  For every problem (the first ``--limit`` of a subset, in file order) the editor state is
a ``Document`` of ``prompt + suffix`` with the cursor at ``len(prompt)``, and the suggestion is what the
server would show there: ``CompletionCore.prepare`` then ``generate``, ``outcome.text or ""`` (greedy, all
post-processing applied).  One exception to the literal ``prompt + suffix``: where the gap is whole lines
(the prompt ends with a newline and the canonical solution does too: every single- and multi-line problem)
the editor state has an *empty line* at the cursor, ``prompt + "\\n" + suffix``, and the completed file is
``prompt + suggestion + "\\n" + suffix``.  That is what a user sees (a blank line where code is missing), and
the only state where a line-mode suggestion, which never contains a newline, can be right; with the
literal layout the cursor sits before the next line's code and the server drops or glues nearly every
suggestion (``--layout as-is`` measures that).

* pass@1: the completed file, then ``test`` and ``check(entry_point)``, runs in its own process (greedy,
  one sample: the share that exits cleanly).  Like the official human-eval harness: a fresh temporary
  directory as cwd, ``python -I -S``, stdin closed, a wall-clock limit (``--timeout``, 3 s) and, set in
  the child with ``resource.setrlimit``, 1 GiB address space, CPU seconds, no core files, 1 MB files;
  destructive ``os``/``shutil``/``subprocess`` functions and ``socket.socket`` are disabled and the
  environment carries no proxy variables.  This is not a firewall: hostile code could still reach the
  network.  Two executions run at a time, after all generation (so they do not disturb the latencies).
* baseline: pass@1 of the empty suggestion, executed the same way (a quality claim must beat it);
  canonical: pass@1 of the reference solution (checks the executor; should be ~100%).
* exact match: ``suggestion.rstrip() == canonical_solution.rstrip()`` (trailing whitespace and newlines
  removed on both sides, leading indentation compared).
* empty rate: share of problems where the server shows nothing.
* syntax-error rate: among non-empty suggestions, the share whose completed file has tree-sitter ERROR or
  MISSING nodes while the file completed with the canonical solution has none.
* latency: ``prepare + generate`` wall time in ms (p50/p95), the KV cache reused between problems as the
  server does; mean generated tokens.

Run (the full single-line set in PSM and SPM: about 5 minutes on an idle 2-core CPU with the embedded model):

    python -m benchmarks.humaneval_infilling [--subset single|multi|random|all] [--fim-mode psm spm auto]
        [--limit N] [--model DIR] [--data DIR] [--threads 1] [--json benchmarks/results/humaneval_single_cpu.json]

Quality figures do not depend on the machine's speed (greedy, and the time budget is long enough not to cut
answers; a different thread count changed 1 suggestion of 3,699).  Latencies do: on a 2-core machine
shared with another busy process, ``--threads 1`` keeps them sane (two OpenMP threads there ran 20-40x slower).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lsp_server.completion.core import CompletionCore
from lsp_server.completion.documents import Document
from lsp_server.completion.parsing import error_nodes
from lsp_server.settings import parse_settings
from lsp_server.stats import nearest_rank

REPO = Path(__file__).resolve().parent.parent
def _default_data() -> Path:
    """``$HUMANEVAL_INFILLING_DIR``, else ``shared/data/human-eval-infilling`` beside the checkout."""
    candidates = [Path(p) for p in (os.environ.get("HUMANEVAL_INFILLING_DIR"),) if p]
    candidates += [REPO.parent / "shared" / "data" / "human-eval-infilling"]
    return next((c for c in candidates if c.is_dir()), candidates[0])


DEFAULT_DATA = _default_data()
FILES = {"single": "HumanEval-SingleLineInfilling.jsonl.gz", "multi": "HumanEval-MultiLineInfilling.jsonl.gz",
         "random": "HumanEval-RandomSpanInfillingLight.jsonl.gz"}
MEMORY_BYTES = 1 << 30
FILE_BYTES = 1 << 20

# Runs in the child (python -I -S, cwd = a fresh temporary folder holding program.py): limits, then a guard
# against accidents (not against malice), then the program.  Exit 0 = every assertion held.
RUNNER = """
import builtins, faulthandler, os, resource, shutil, socket, subprocess, sys
for which, value in ((resource.RLIMIT_AS, {memory}), (resource.RLIMIT_CPU, {cpu}), (resource.RLIMIT_CORE, 0),
                     (resource.RLIMIT_FSIZE, {fsize})):
    hard = resource.getrlimit(which)[1]
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(which, (value, value))
faulthandler.disable()
for module, names in ((os, "kill killpg system putenv remove removedirs rmdir fchdir setuid fork forkpty rename "
                            "renames truncate replace unlink fchmod fchown chmod chown chroot lchown chdir"),
                      (shutil, "rmtree move chown"), (subprocess, "Popen"), (socket, "socket"),
                      (builtins, "exit quit help")):
    for name in names.split():
        setattr(module, name, None)
try:
    with open("program.py") as f:
        code = compile(f.read(), "program.py", "exec")
    exec(code, {{"__name__": "__main__"}})
except BaseException as exc:  # SystemExit too, as in human-eval
    sys.stderr.write("\\n" + type(exc).__name__ + "\\n")
    sys.stderr.flush()
    os._exit(1)
os._exit(0)
"""


@dataclass(frozen=True)
class Problem:
    task_id: str
    entry_point: str
    prompt: str
    suffix: str
    canonical_solution: str
    test: str

    @property
    def whole_lines(self) -> bool:
        """The gap is whole lines: the editor shows an empty line at the cursor."""
        return (not self.prompt or self.prompt.endswith("\n")) and self.canonical_solution.endswith("\n")


@dataclass
class Row:
    """One problem in one mode (what the JSON keeps per problem)."""

    task_id: str
    suggestion: str
    raw: str  # the model's middle before post-processing (up to where decoding stopped)
    passed: bool
    exact: bool
    ms: float
    tokens: int
    stop: str
    status: str  # "passed", "timeout" or "failed: <exception>"
    adds_syntax_error: bool
    empty_passed: bool
    canonical_passed: bool
    tried: int = 1  # answers decoded (more than one when the first did not fit the code around the hole)


def load_problems(data: Path, subset: str, limit: int | None = None) -> list[Problem]:
    """The first ``limit`` problems of a subset, in file order."""
    with gzip.open(data / FILES[subset], "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [Problem(**{k: r[k] for k in Problem.__dataclass_fields__}) for r in rows[:limit]]


def editor_state(problem: Problem, layout: str = "blank-line") -> tuple[str, int]:
    """The document text and cursor offset the completion is asked for."""
    blank = "\n" if layout == "blank-line" and problem.whole_lines else ""
    return problem.prompt + blank + problem.suffix, len(problem.prompt)


def completed_file(problem: Problem, suggestion: str, layout: str = "blank-line") -> str:
    """The file once the suggestion is accepted at the cursor."""
    text, offset = editor_state(problem, layout)
    return text[:offset] + suggestion + text[offset:]


def program(problem: Problem, suggestion: str, layout: str = "blank-line") -> str:
    return completed_file(problem, suggestion, layout) + "\n" + problem.test + f"\ncheck({problem.entry_point})\n"


def canonical_program(problem: Problem) -> str:
    return program(problem, problem.canonical_solution, "as-is")


@dataclass(frozen=True)
class Execution:
    passed: bool
    status: str
    seconds: float


def execute(source: str, timeout_s: float = 3.0) -> Execution:
    """Run ``source`` in a sandboxed child process (see the module docstring); never raises on its failures."""
    t0 = time.perf_counter()
    cpu = int(timeout_s) + 1
    runner = RUNNER.format(memory=MEMORY_BYTES, cpu=cpu, fsize=FILE_BYTES)
    with tempfile.TemporaryDirectory(prefix="humaneval-") as tmp:
        Path(tmp, "program.py").write_text(source, encoding="utf-8")
        env = {"PATH": os.defpath, "HOME": tmp, "TMPDIR": tmp, "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
               "PYTHONDONTWRITEBYTECODE": "1"}  # nothing else: no proxies, no credentials
        with open(Path(tmp, "stderr"), "wb") as err:
            proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", runner], cwd=tmp, env=env,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                    start_new_session=True)
            try:
                code = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return Execution(False, "timeout", time.perf_counter() - t0)
        if code == 0:
            return Execution(True, "passed", time.perf_counter() - t0)
        tail = Path(tmp, "stderr").read_bytes()[-200:].decode("utf-8", "replace").strip().splitlines()
        why = tail[-1] if tail and code == 1 else f"exit {code}"
        return Execution(False, f"failed: {why}", time.perf_counter() - t0)


def execute_all(sources: Sequence[str], timeout_s: float = 3.0, workers: int = 2) -> list[Execution]:
    """``execute`` each source, ``workers`` child processes at a time, results in order."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda s: execute(s, timeout_s), sources))


def make_core(fim_mode: str, model: str | None = None, max_new_tokens: int | None = None,
              time_budget_ms: int = 60_000, threads: int = 0, alternatives: int | None = None,
              speculative: bool | None = None, decode: str | None = None) -> CompletionCore:
    """A loaded ``CompletionCore`` with the server's settings, except those given here."""
    raw: dict[str, Any] = {"fimMode": fim_mode, "model": model, "timeBudgetMs": time_budget_ms, "threads": threads}
    if speculative is not None:
        raw["speculative"] = speculative
    if decode is not None:
        raw["decode"] = decode
    if max_new_tokens is not None:
        raw["maxNewTokens"] = max_new_tokens
    if alternatives is not None:
        raw["alternatives"] = alternatives
    settings, problems = parse_settings(raw)
    if problems:
        raise SystemExit("; ".join(problems))
    core = CompletionCore(settings)
    core.load()
    return core


def suggest(core: CompletionCore, problem: Problem,
            layout: str = "blank-line") -> tuple[str, str, float, int, str, int]:
    """(suggestion, raw middle, prepare+generate ms, generated tokens, stop reason, answers tried), as the server
    computes it."""
    text, offset = editor_state(problem, layout)
    doc = Document(f"file:///humaneval/{problem.task_id.replace('/', '_')}.py", "python", 0, text)
    t0 = time.perf_counter()
    outcome = core.generate(core.prepare(doc, offset))
    ms = (time.perf_counter() - t0) * 1e3
    return outcome.text or "", outcome.raw, ms, len(outcome.result.ids), outcome.result.stop, outcome.tried


def evaluate(core: CompletionCore, problems: Sequence[Problem], baseline: Sequence[Execution],
             canonical: Sequence[Execution], layout: str = "blank-line", timeout_s: float = 3.0) -> list[Row]:
    """Suggest for every problem (sequentially), then execute the completed programs (in parallel)."""
    made = []
    for i, problem in enumerate(problems, 1):
        made.append(suggest(core, problem, layout))
        if i % 100 == 0:
            print(f"  {i}/{len(problems)}", file=sys.stderr, flush=True)
    runs = execute_all([program(p, m[0], layout) for p, m in zip(problems, made, strict=True)], timeout_s)
    rows = []
    for p, (text, raw, ms, tokens, stop, tried), run, empty, canon in zip(problems, made, runs, baseline, canonical,
                                                                  strict=True):
        adds = bool(text) and error_nodes("python", completed_file(p, p.canonical_solution, "as-is")) == 0 \
            and error_nodes("python", completed_file(p, text, layout)) > 0
        exact = text.rstrip() == p.canonical_solution.rstrip()
        rows.append(Row(p.task_id, text, raw, run.passed, exact, round(ms, 2), tokens, stop, run.status, adds,
                        empty.passed, canon.passed, tried))
    return rows


def summarize(rows: Sequence[Row]) -> dict[str, Any]:
    n = len(rows)
    shown = [r for r in rows if r.suggestion]
    ms = [r.ms for r in rows]
    return {
        "n": n,
        "pass_at_1": sum(r.passed for r in rows) / n,
        "exact_match": sum(r.exact for r in rows) / n,
        "empty_rate": 1 - len(shown) / n,
        "syntax_error_rate": sum(r.adds_syntax_error for r in shown) / len(shown) if shown else 0.0,
        "latency_ms_p50": nearest_rank(ms, 50),
        "latency_ms_p95": nearest_rank(ms, 95),
        "mean_generated_tokens": sum(r.tokens for r in rows) / n,
        "retried_rate": sum(r.tried > 1 for r in rows) / n,  # share where the first answer did not fit
        "baseline_pass_at_1": sum(r.empty_passed for r in rows) / n,
        "canonical_pass_at_1": sum(r.canonical_passed for r in rows) / n,
        "passed_not_by_empty": sum(r.passed and not r.empty_passed for r in rows),
        "statuses": dict(Counter(r.status for r in rows).most_common(8)),
        "stops": dict(Counter(r.stop for r in rows)),
    }


def machine() -> dict[str, Any]:
    import torch

    cpu = "unknown"
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "platform": platform.platform()}


def code_version() -> dict[str, Any]:
    """The commit, and the files of the pipeline that differed from it when this ran (other work in progress)."""
    def git(*cmd: str) -> str:
        done = subprocess.run(["git", "-C", str(REPO), *cmd], capture_output=True, text=True, check=False)
        return done.stdout.rstrip() if done.returncode == 0 else ""

    changed = git("status", "--porcelain", "--", "lsp_server", "model_backend").splitlines()
    return {"commit": git("rev-parse", "HEAD") or None, "uncommitted": [line[3:] for line in changed]}


def table(results: Sequence[dict[str, Any]]) -> str:
    head = (f"{'mode':<5} {'subset':<7} {'n':>5} {'pass@1':>7} {'exact':>6} {'empty':>6} {'syntax':>6} "
            f"{'p50 ms':>7} {'p95 ms':>7} {'tokens':>6} {'base':>6} {'canon':>6} {'wall s':>7}")
    lines = [head, "-" * len(head)]
    for r in results:
        s = r["summary"]
        lines.append(f"{r['mode']:<5} {r['subset']:<7} {s['n']:>5} {s['pass_at_1']:>7.1%} {s['exact_match']:>6.1%} "
                     f"{s['empty_rate']:>6.1%} {s['syntax_error_rate']:>6.1%} {s['latency_ms_p50']:>7.0f} "
                     f"{s['latency_ms_p95']:>7.0f} {s['mean_generated_tokens']:>6.1f} "
                     f"{s['baseline_pass_at_1']:>6.1%} {s['canonical_pass_at_1']:>6.1%} {r['wall_s']:>7.0f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with the HumanEval-*.jsonl.gz files")
    ap.add_argument("--subset", choices=[*FILES, "all"], default="single")
    ap.add_argument("--fim-mode", nargs="+", choices=["psm", "spm", "auto"], default=["psm", "spm"])
    ap.add_argument("--model", help="checkpoint folder (default: the embedded model)")
    ap.add_argument("--max-new-tokens", type=int, help="default: the server's")
    ap.add_argument("--time-budget-ms", type=int, default=60_000, help="large: a busy CPU must not cut answers")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = the server's default); "
                    "1 keeps latencies sane when another process shares a 2-core machine")
    ap.add_argument("--limit", type=int, help="only the first N problems of each subset")
    ap.add_argument("--alternatives", type=int, help="answers to try when one does not fit (default: the server's)")
    ap.add_argument("--layout", choices=["blank-line", "as-is"], default="blank-line")
    ap.add_argument("--timeout", type=float, default=3.0, help="wall-clock seconds per execution")
    ap.add_argument("--speculative", nargs="+", choices=["on", "off"],
                    help="run each FIM mode with speculative decoding on and/or off (default: the server's setting)")
    ap.add_argument("--decode", nargs="+", choices=["auto", "eager", "static", "compiled", "native"],
                    help="run each FIM mode with each of these decode steps (default: the server's setting)")
    ap.add_argument("--json", type=Path, help="write everything, per-problem rows included, here")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    subsets = list(FILES) if args.subset == "all" else [args.subset]
    problems = {s: load_problems(args.data, s, args.limit) for s in subsets}
    t0 = time.perf_counter()
    base = {s: execute_all([program(p, "", args.layout) for p in ps], args.timeout) for s, ps in problems.items()}
    canon = {s: execute_all([canonical_program(p) for p in ps], args.timeout) for s, ps in problems.items()}
    print(f"baseline and canonical executions: {time.perf_counter() - t0:.0f} s", file=sys.stderr)

    results: list[dict[str, Any]] = []
    variants = [(mode, spec, decode) for mode in args.fim_mode for spec in (args.speculative or [None])
                for decode in (args.decode or [None])]
    for mode, spec, decode in variants:
        core = make_core(mode, args.model, args.max_new_tokens, args.time_budget_ms, args.threads, args.alternatives,
                         None if spec is None else spec == "on", decode)
        for subset, ps in problems.items():
            print(f"{mode} {subset}: {len(ps)} problems", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            rows = evaluate(core, ps, base[subset], canon[subset], args.layout, args.timeout)
            name = mode + ("" if spec is None else f"/spec-{spec}") + ("" if decode is None else f"/{decode}")
            results.append({"mode": name, "subset": subset, "speculative": core.settings.speculative,
                            "decode_step": core.engine.decode_step if core.engine is not None else None,
                            "wall_s": round(time.perf_counter() - t0, 1),
                            "summary": summarize(rows), "rows": [asdict(r) for r in rows]})
        assert core.loaded is not None
        model_info = {"name": core.loaded.name, "path": os.path.relpath(core.loaded.path, REPO),
                      "device": str(core.loaded.device), "dtype": str(core.loaded.dtype),
                      "settings": asdict(core.settings)}
        del core

    print(table(results))
    if args.json:
        report = {
            "command": shlex.join([Path(sys.executable).name, "-m", "benchmarks.humaneval_infilling",
                                   *(argv if argv is not None else sys.argv[1:])]),
            "machine": machine(), "code": code_version(), "model": model_info, "data": os.path.relpath(args.data, REPO),
            "layout": args.layout, "timeout_s": args.timeout, "time_budget_ms": args.time_budget_ms,
            "max_new_tokens": args.max_new_tokens, "results": results,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
