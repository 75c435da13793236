"""The scheduler with the real engine: supersession and cancellation stop decoding within a token."""

from __future__ import annotations

import asyncio
import threading

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from lsp_server.scheduling import Scheduler
from model_backend.engine import Engine
from model_backend.generation import GenerationRequest, GenerationResult


@pytest.fixture(scope="module")
def engine() -> Engine:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=256, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=4, intermediate_size=128, max_position_embeddings=4096)
    return Engine(LlamaForCausalLM(config).eval(), 4096)


def long_job(engine: Engine, cancel: threading.Event, started: threading.Event) -> GenerationResult:
    def should_stop(ids: list[int]) -> bool:
        started.set()
        return False

    return engine.generate(GenerationRequest(prompt_ids=[1, 2, 3], max_new_tokens=3000, stop_ids=set(),
                                             should_stop=should_stop, cancel=cancel))


async def test_a_newer_ticket_supersedes_and_stops_the_older_one(engine: Engine) -> None:
    scheduler = Scheduler()
    first = scheduler.ticket("file:///a.py")
    started = threading.Event()
    running = asyncio.ensure_future(scheduler.run(first, lambda: long_job(engine, first.cancel, started)))
    await asyncio.get_running_loop().run_in_executor(None, started.wait)
    second = scheduler.ticket("file:///a.py")
    result = await running
    assert first.superseded and result is not None and result.stop == "cancelled" and len(result.ids) < 3000
    assert not second.cancel.is_set()
    other = scheduler.ticket("file:///b.py")  # another document does not supersede
    assert not second.superseded and not other.superseded
    scheduler.shutdown()


async def test_task_cancellation_sets_the_flag_the_engine_checks(engine: Engine) -> None:
    scheduler = Scheduler()
    ticket = scheduler.ticket("file:///a.py")
    started = threading.Event()
    results: list[GenerationResult] = []

    def job() -> GenerationResult:
        results.append(long_job(engine, ticket.cancel, started))
        return results[-1]

    task = asyncio.ensure_future(scheduler.run(ticket, job))
    await asyncio.get_running_loop().run_in_executor(None, started.wait)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.get_running_loop().run_in_executor(None, lambda: scheduler.submit(lambda: None).result())
    assert results and results[0].stop == "cancelled" and len(results[0].ids) < 3000
    scheduler.shutdown()


async def test_a_ticket_cancelled_before_it_starts_never_runs() -> None:
    scheduler = Scheduler()
    ticket = scheduler.ticket("file:///a.py")
    ticket.cancel.set()
    ran: list[bool] = []
    assert await scheduler.run(ticket, lambda: ran.append(True)) is None
    assert not ran
    scheduler.shutdown()


async def test_a_ticket_says_whether_its_job_reached_the_worker(engine: Engine) -> None:
    """What the prefetch accounting relies on: a job cancelled before its turn never starts, nor claims it did."""
    scheduler = Scheduler()
    gate = threading.Event()
    blocker = asyncio.ensure_future(scheduler.run(scheduler.ticket("file:///a.py"), gate.wait))
    waiting = scheduler.ticket("file:///b.py")
    queued = asyncio.ensure_future(scheduler.run(waiting, lambda: "ran"))
    waiting.cancel.set()  # cancelled while the worker is still busy with the first job
    gate.set()
    assert await queued is None and not waiting.started
    runs = scheduler.ticket("file:///c.py")
    assert await scheduler.run(runs, lambda: "ran") == "ran" and runs.started
    await blocker
    scheduler.shutdown()
