"""One model worker; the newest request per document wins; cancellation reaches the decode loop.

Why a single worker thread: the model and its KV cache are one mutable thing, and the cache only pays off
if requests run one after another in typing order.  The asyncio loop never runs model code: it awaits the
worker's future, so document changes keep flowing while the model decodes.

Supersession: a new request for a document sets the previous ticket's cancel flag; the engine checks the
flag after every token, so the older request ends within one decode step and is answered with nothing.
``$/cancelRequest`` cancels the handler's task; we turn that into the same flag.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass
class Ticket:
    """One request's claim on the worker; ``cancel`` stops its decoding."""

    uri: str
    cancel: threading.Event = field(default_factory=threading.Event)
    superseded: bool = False
    started: bool = False  # its job began on the worker (set there; read on the loop, where a stale False is harmless)


class Scheduler:
    """Serialises model work on one thread and tracks the newest ticket per document."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._latest: dict[str, Ticket] = {}

    def ticket(self, uri: str) -> Ticket:
        """A ticket for a new request on ``uri``; an older one for the same document is superseded."""
        old = self._latest.get(uri)
        if old is not None:
            old.superseded = True
            old.cancel.set()
        new = Ticket(uri)
        self._latest[uri] = new
        return new

    def release(self, ticket: Ticket) -> None:
        """Forget ``ticket`` once answered (if nothing newer replaced it)."""
        if self._latest.get(ticket.uri) is ticket:
            del self._latest[ticket.uri]

    async def run(self, ticket: Ticket, job: Callable[[], T]) -> T | None:
        """Run ``job`` on the worker; None if the ticket was cancelled before it started."""

        def guarded() -> T | None:
            if ticket.cancel.is_set():
                return None
            ticket.started = True
            return job()

        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, guarded)
        except asyncio.CancelledError:
            ticket.cancel.set()  # the client cancelled: stop decoding at the next token
            raise

    async def turn(self) -> None:
        """Wait until the model work queued before this call is done.

        A request waits here before it prepares its prompt: under a burst, the requests behind it are read
        (and supersede it) meanwhile, so only the newest one pays for context, prompt and tokenization on the
        event loop, and the loop stays free for everything else (``codellama/stats`` answers at once).
        """
        await asyncio.get_running_loop().run_in_executor(self._pool, _nothing)

    def submit(self, job: Callable[[], T]) -> Future[T]:
        """Run ``job`` on the worker outside any request (model loading), in order with requests."""
        return self._pool.submit(job)

    def shutdown(self) -> None:
        for ticket in self._latest.values():
            ticket.cancel.set()
        self._pool.shutdown(wait=False, cancel_futures=True)


def _nothing() -> None:
    """The no-op job ``Scheduler.turn`` waits for."""
