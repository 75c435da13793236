"""Test hook: injected engine faults (issue 15, ``tests/lsp/test_faults.py``).

``CODELLAMA_FAULT_INJECT`` (read once, when the server starts) lists faults, each fired once, in order, on the
next requests: ``error@3`` raises ``EngineError`` at the 3rd decoded token, ``oom@3`` raises
``torch.OutOfMemoryError`` there (a CUDA out-of-memory simulated on any device).  Unset, nothing is wrapped and
nothing changes.  It lives here, around the ``Backend``, so the engines themselves carry no test code.
"""

from __future__ import annotations

import dataclasses
import os
import re

import torch

from model_backend.generation import Backend, EngineError, GenerationRequest, GenerationResult

ENV = "CODELLAMA_FAULT_INJECT"
_FAULT = re.compile(r"(error|oom)@([1-9][0-9]*)")


class FaultInjector:
    """The faults still to fire, ``(kind, token)`` in order."""

    def __init__(self, faults: list[tuple[str, int]]) -> None:
        self.pending = list(faults)

    def around(self, backend: Backend) -> Backend:
        """``backend`` as it is, or with the next fault armed for its next request."""
        return _Faulty(backend, self.pending.pop(0)) if self.pending else backend


def from_env(value: str | None = None) -> FaultInjector | None:
    """The injector ``CODELLAMA_FAULT_INJECT`` asks for (None when unset); a malformed entry is an error."""
    value = os.environ.get(ENV) if value is None else value
    if not value:
        return None
    faults = []
    for entry in value.split(","):
        match = _FAULT.fullmatch(entry.strip())
        if match is None:
            raise ValueError(f"{ENV}: {entry!r} is not error@N or oom@N")
        faults.append((match[1], int(match[2])))
    return FaultInjector(faults)


class _Faulty:
    """One request through ``backend`` that fails at the ``at``-th decoded token."""

    def __init__(self, backend: Backend, fault: tuple[str, int]) -> None:
        self.backend, (self.kind, self.at) = backend, fault

    def generate(self, req: GenerationRequest) -> GenerationResult:
        rule = req.should_stop

        def should_stop(ids: list[int]) -> bool:
            if len(ids) >= self.at:
                if self.kind == "oom":
                    raise torch.OutOfMemoryError(f"injected out of memory at token {len(ids)} ({ENV})")
                raise EngineError(f"injected engine error at token {len(ids)} ({ENV})")
            return rule(ids) if rule is not None else False

        return self.backend.generate(dataclasses.replace(req, should_stop=should_stop))

    def reset(self) -> None:
        self.backend.reset()
