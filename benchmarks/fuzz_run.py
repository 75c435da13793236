"""The long fuzz run (issue 15): one real server through >= 10,000 seeded fuzz messages (the generator of the CI
test, ``tests/lsp/fuzz_traffic.py``), recording what the CI test asserts, as figures.

    python -m benchmarks.fuzz_run --seed 15 --messages 11000 --json benchmarks/results/fuzz_run.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from tests.lsp.fuzz_traffic import Traffic, deliver
from tests.lsp.rawclient import RawServer

URI = "file:///work/final.py"
TEXT = "def mean(values):\n    total = sum(values)\n    return total / "


def run(seed: int, count: int, timeout: float) -> dict[str, Any]:
    """Figures of one session: a failure is a figure here, not an exception (the CI test asserts them)."""
    server = RawServer()
    started = time.monotonic()
    try:
        server.initialize({"timeBudgetMs": 30000})
        d = deliver(server, Traffic(seed, count, True), timeout)
        server.open(URI, TEXT)
        final = server.complete(URI, 2, len("    return total / "), kind=1, timeout=300)
        return {"seed": seed, "messages": d.sent + 1, "requests": d.sent_requests, "input_stalled": d.input_stalled,
                "unanswered": len(d.unanswered), "duplicated": len(d.duplicated),
                "answers_to_unknown_ids": len(d.strangers),
                "tracebacks": server.stderr.count("Traceback"), "invalid_stdout_frames": len(server.violations),
                "alive": server.proc.poll() is None, "final_items": len(final.get("result", {}).get("items", [])),
                "peak_rss_mb": round(server.vm_hwm_kb() / 1024, 1), "wall_s": round(time.monotonic() - started, 1),
                "exit_code": server.close()}
    finally:
        server.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--messages", type=int, default=11000)
    parser.add_argument("--timeout", type=float, default=900, help="seconds for the input, then for the answers")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    figures = run(args.seed, args.messages, args.timeout)
    print(json.dumps(figures, indent=1))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
