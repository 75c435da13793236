"""Does the training corpus contain HumanEval's solutions verbatim?  (Evaluation side: reads both.)

For each HumanEval task, the function body after the docstring (canonical solution in place) is taken
when it has at least ``--min-lines`` non-blank lines; whitespace is collapsed on both sides, and every
corpus document is searched for it.  Shorter bodies (``return x + y``) occur in any large code base and
say nothing.  The corpus builder itself never reads evaluation data; this script is how we check it.

    python -m benchmarks.contamination_check [--corpus data/corpus.jsonl.xz] [--data DIR]
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
from pathlib import Path

from benchmarks.humaneval_infilling import DEFAULT_DATA
from model_backend.embedded.corpus import iter_corpus

SPANS = "HumanEval-RandomSpanInfillingLight.jsonl.gz"  # one row per task is enough to rebuild each function


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def solution_bodies(data: Path, min_lines: int) -> dict[str, str]:
    """Task id → the function body after its docstring, whitespace-normalised, if long enough."""
    bodies: dict[str, str] = {}
    with gzip.open(data / SPANS, "rt") as rows:
        tasks = [json.loads(line) for line in rows]
    for row in tasks:
        task = "/".join(row["task_id"].split("/")[1:3])
        parts = re.split(r'"""|\'\'\'', row["prompt"] + row["canonical_solution"] + row["suffix"])
        lines = [x for x in (parts[-1] if len(parts) >= 3 else "").splitlines() if x.strip()]
        if len(lines) >= min_lines:
            bodies.setdefault(task, normalise("\n".join(lines)))
    return bodies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("data/corpus.jsonl.xz"))
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--min-lines", type=int, default=3)
    args = parser.parse_args()
    bodies = solution_bodies(args.data, args.min_lines)
    hits: dict[str, str] = {}
    docs = 0
    for doc in iter_corpus(args.corpus):
        docs += 1
        text = normalise(doc["text"])
        hits.update({task: doc["path"] for task, body in bodies.items() if task not in hits and body in text})
    print(json.dumps({"tasks_checked": len(bodies), "corpus_documents": docs, "verbatim_hits": hits}, indent=2))


if __name__ == "__main__":
    main()
