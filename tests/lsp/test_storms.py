"""Storms against the real server and model (issue 15): 1,000 inline-completion requests sent without waiting,
then 1,000 ``didChange`` notifications with a request after each (every 50th awaited, as when the user pauses, so that
the stale check covers real suggestions, not only superseded empty answers).

Every request is answered exactly once, peak memory (VmHWM) stays within 10% of the loaded model's, no answer is
stale (checked client side: an item's range is at the cursor of the version the request was made for, inside that
version's text), and a watchdog sees ``codellama/stats`` answer within 1 s throughout (it never waits for the
model worker).  p50/p95 answer times and peak memory are printed (``-s`` shows them).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from tests.lsp.rawclient import RawServer, completion_params

URI = "file:///work/storm.py"
TEXT = ("import sys\n\n\ndef count_words(text):\n    words = text.split()\n    return len(words)\n\n\n"
        "def main():\n    n = ")
N = 1000


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(-(-len(ordered) * p // 100)) - 1)] if ordered else 0.0


class Watchdog(threading.Thread):
    """Asks ``codellama/stats`` every 0.3 s; records each answer time by phase.

    In the ``burst`` phase a probe sits in the pipe behind up to 1,000 requests the client has just written, and
    the server reads its input in order, so it waits for their framing and dispatch (about 0.3-1 ms each), not
    for the model.  Elsewhere (``typing``: the model decoding, changes and requests arriving one at a time) the
    issue's bound applies: an answer within 1 s whatever the model is doing.
    """

    def __init__(self, server: RawServer) -> None:
        super().__init__(daemon=True)
        self.server, self.stop = server, threading.Event()
        self.phase = "burst"
        self.times: dict[str, list[float]] = {"burst": [], "typing": []}

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            phase, t0 = self.phase, time.monotonic()
            self.server.request("codellama/stats", {}, msg_id=f"wd{n}", timeout=30)
            self.times[phase].append(time.monotonic() - t0)
            n += 1
            self.stop.wait(0.3)


class Arrivals(threading.Thread):
    """Stamps each response's arrival time by id as it comes (the client may be busy sending meanwhile)."""

    def __init__(self, server: RawServer) -> None:
        super().__init__(daemon=True)
        self.server, self.stop = server, threading.Event()
        self.at: dict[Any, float] = {}

    def run(self) -> None:
        seen = 0
        while not self.stop.is_set():
            with self.server._cond:
                self.server._cond.wait(0.05)
                new = self.server.messages[seen:]
                seen = len(self.server.messages)
            now = time.monotonic()
            for m in new:
                if "method" not in m and isinstance(m.get("id"), str):
                    self.at.setdefault(m["id"], now)

    def wait(self, sent: dict[Any, float], timeout: float = 900) -> dict[Any, float]:
        """Answer time (s) of each request id in ``sent`` that was answered within ``timeout``."""
        deadline = time.monotonic() + timeout
        while any(k not in self.at for k in sent) and time.monotonic() < deadline:
            time.sleep(0.1)
        return {k: self.at[k] - t for k, t in sent.items() if k in self.at}


def line_col_end(text: str) -> tuple[int, int]:
    lines = text.split("\n")
    return len(lines) - 1, len(lines[-1])


def test_storms_answer_everything_once_in_bounded_memory_and_never_stale() -> None:
    server = RawServer()
    try:
        server.initialize({"timeBudgetMs": 10000})  # a loaded CI machine still finishes the awaited ones
        server.wait_ready()
        server.open(URI, TEXT)
        line, col = line_col_end(TEXT)
        assert "result" in server.complete(URI, line, col, kind=2)
        loaded_kb = server.vm_hwm_kb()
        dog, arrivals = Watchdog(server), Arrivals(server)
        dog.start()
        arrivals.start()

        # 1,000 requests without waiting
        sent: dict[Any, float] = {}
        for i in range(N):
            sent[f"a{i}"] = time.monotonic()
            server.request_async("textDocument/inlineCompletion", completion_params(URI, line, col, 2), f"a{i}")
        times = list(arrivals.wait(sent).values())
        assert len(times) == N, f"{N - len(times)} requests unanswered"
        dog.phase = "typing"

        # 1,000 changes, a request after each; what the client knew when it asked
        text, version = TEXT, 1
        asked: dict[Any, tuple[str, int, int]] = {}
        sent2: dict[Any, float] = {}
        for i in range(N):
            ch = "abcdefghij"[i % 10]
            line, col = line_col_end(text)
            version += 1
            server.notify("textDocument/didChange", {
                "textDocument": {"uri": URI, "version": version},
                "contentChanges": [{"range": {"start": {"line": line, "character": col},
                                              "end": {"line": line, "character": col}}, "text": ch}]})
            text += ch
            line, col = line_col_end(text)
            asked[f"b{i}"] = (text, line, col)
            sent2[f"b{i}"] = time.monotonic()
            server.request_async("textDocument/inlineCompletion", completion_params(URI, line, col, 2), f"b{i}")
            if i % 50 == 49:  # the user pauses: this one is not superseded, so real suggestions get checked too
                server.response(f"b{i}", timeout=120)
        times2 = list(arrivals.wait(sent2).values())
        dog.stop.set()
        arrivals.stop.set()
        dog.join(60)
        assert len(times2) == N, f"{N - len(times2)} requests unanswered"

        counts = server.answer_counts()
        assert all(n == 1 for key, n in counts.items() if key.startswith('"a') or key.startswith('"b')), \
            [k for k, n in counts.items() if n > 1]
        shown = 0
        for msg_id, (asked_text, line, col) in asked.items():
            [answer] = server.responses_to(msg_id)
            for item in answer["result"]["items"]:
                shown += 1
                start, end = item["range"]["start"], item["range"]["end"]
                # computed for this version: at its cursor, inside its text
                assert (start["line"], start["character"]) == (line, col), (msg_id, item)
                assert end["line"] == line and col <= end["character"] <= len(asked_text.split("\n")[line])
        assert shown >= N // 50 // 2, f"only {shown} suggestions shown while typing: the stale check saw too few"
        peak_kb = server.vm_hwm_kb()
        all_times = sorted(times + times2)
        print(f"\nstorm: {2 * N} requests, p50 {percentile(all_times, 50) * 1e3:.0f} ms, "
              f"p95 {percentile(all_times, 95) * 1e3:.0f} ms; burst p50 {percentile(times, 50) * 1e3:.0f} ms "
              f"p95 {percentile(times, 95) * 1e3:.0f} ms; typing p50 {percentile(times2, 50) * 1e3:.0f} ms "
              f"p95 {percentile(times2, 95) * 1e3:.0f} ms; suggestions shown while typing {shown}; "
              f"VmHWM loaded {loaded_kb / 1024:.0f} MiB, peak {peak_kb / 1024:.0f} MiB; "
              f"stats answered in at most {max(dog.times['typing']) * 1e3:.0f} ms while typing "
              f"({len(dog.times['typing'])} probes), {max(dog.times['burst'], default=0) * 1e3:.0f} ms in the burst")
        assert peak_kb < loaded_kb * 1.10, (loaded_kb, peak_kb)
        assert dog.times["typing"] and max(dog.times["typing"]) < 1.0, dog.times["typing"]
        assert max(dog.times["burst"], default=0) < 5.0, dog.times["burst"]  # queued behind 1,000 frames
        assert "Traceback" not in server.stderr and not server.violations
        assert "result" in server.complete(URI, line, col, kind=1)  # still serving
    finally:
        server.close()
