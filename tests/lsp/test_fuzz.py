"""Seeded fuzzing of the real server over stdio (CI-sized): valid typing interleaved with malformed frames,
JSON-RPC errors, LSP garbage, UTF-16 edge cases, a 5 MB and a binary document, didClose-then-request and
out-of-range changes.  Every request answered exactly once, nothing else answered, alive at the end, the
last completion the same as on a fresh server, no traceback on stderr, only strict JSON on stdout.
"""

from __future__ import annotations

import time
from typing import Any

from tests.lsp.fuzz_traffic import Traffic, deliver
from tests.lsp.rawclient import RawServer

FINAL_URI = "file:///work/final.py"
FINAL_TEXT = "def mean(values):\n    total = sum(values)\n    return total / "
OPTIONS = {"timeBudgetMs": 30000}  # generous: the check compares answers, not speed


def run_session(seed: int, count: int, big_document: bool = True, answer_timeout: float = 600) -> dict[str, Any]:
    """Drive one server through ``count`` fuzz messages; return the figures (and fail on any violation)."""
    server = RawServer()
    started = time.monotonic()
    try:
        server.initialize(OPTIONS)
        d = deliver(server, Traffic(seed, count, big_document), answer_timeout)
        assert not d.input_stalled, "the server stopped reading its input"
        unanswered, duplicated, strangers = d.unanswered, d.duplicated, d.strangers
        server.open(FINAL_URI, FINAL_TEXT)
        final = server.complete(FINAL_URI, 2, len("    return total / "), kind=1, timeout=300)
        figures = {"messages": d.sent + 1, "requests": d.sent_requests, "unanswered": len(unanswered),
                   "duplicated": len(duplicated), "answers_to_unknown_ids": len(strangers),
                   "tracebacks": server.stderr.count("Traceback"), "invalid_stdout_frames": len(server.violations),
                   "peak_rss_mb": round(server.vm_hwm_kb() / 1024, 1),
                   "wall_s": round(time.monotonic() - started, 1), "final": final.get("result")}
        assert server.proc.poll() is None, "the server died"
        assert not unanswered, f"unanswered: {unanswered[:10]}"
        assert not duplicated, f"answered twice: {duplicated[:10]}"
        assert not strangers, f"answers to ids never sent: {strangers[:10]}"
        assert "Traceback" not in server.stderr, server.stderr[-4000:]
        assert not server.violations, server.violations[:5]
        assert server.close() == 0
        return figures
    finally:
        server.kill()


def fresh_completion() -> Any:
    server = RawServer()
    try:
        server.initialize(OPTIONS)
        server.open(FINAL_URI, FINAL_TEXT)
        return server.complete(FINAL_URI, 2, len("    return total / "), kind=1, timeout=300)["result"]
    finally:
        server.kill()


def test_fuzzed_session_is_answered_exactly_once_and_stays_correct() -> None:
    figures = run_session(seed=15, count=2500)
    assert figures["requests"] > 500
    assert figures["final"] == fresh_completion()
