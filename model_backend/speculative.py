"""Drafts for speculative decoding, taken from the code itself (prompt lookup): no second model.

Why: code repeats itself.  The identifiers, calls and whole lines a completion is about to write are very
often already in the prompt (the prefix above the cursor, the suffix below it) or in the suggestion shown a
keystroke ago.  So the draft for the next tokens is what followed the longest recent match of the last
generated tokens: first in the previous suggestion, then in the prompt and the answer so far.  The engine
verifies a draft of up to k tokens in one forward pass of k+1 rows and keeps the longest prefix that greedy
decoding would have chosen anyway, plus the model's own next token, so the output is the same as plain
decoding; only the number of forward passes changes.

The search is a few vectorised comparisons over the prompt's ids (numpy), microseconds per draft.
"""

from __future__ import annotations

import numpy as np

DRAFT_TOKENS = 4  # k: draft tokens from the prompt verified per pass; also the fixed verify step's k (k + 1 rows)
# A draft that continues the previous suggestion is usually right all the way (the user typed what it said), so it may
# run longer where the verify pass has no fixed shape (eager decoding, the CPU); a match of a single token in the
# prompt is a weak hint, so its draft stays short.  Measured: benchmarks/README.md, "Speed".
PREVIOUS_DRAFT_TOKENS = 8
ONE_TOKEN_MATCH_DRAFT = 2
MAX_NGRAM = 3  # longest tail of the answer looked up
MIN_NGRAM = 1
PREVIOUS_TAIL = 8  # prompt ids kept before the previous suggestion, so its first tokens can be matched too
# A verify pass of k+1 rows costs more than a one-row step (benchmarks/README.md, "Speed"): after this many drafts in
# a row of which the model kept nothing, drafting pauses for COOL_DOWN tokens (the answer has left the code's
# repeats; the output is the same either way).
MISSES_BEFORE_PAUSE = 2
COOL_DOWN = 4


def lookup(hay: np.ndarray, size: int, pattern: np.ndarray, k: int) -> list[int]:
    """Up to ``k`` ids that followed the last occurrence of ``pattern`` in ``hay[:size]``.

    Only occurrences with at least one id after them count, so when the pattern is the end of ``hay[:size]``
    (the answer's own tail) that occurrence never matches itself.
    """
    n = len(pattern)
    limit = size - n  # occurrences starting before this end before ``size``: an id follows them
    if limit <= 0 or n == 0:
        return []
    starts = np.flatnonzero(hay[:limit] == pattern[0])
    for j in range(1, n):
        if not starts.size:
            return []
        starts = starts[hay[starts + j] == pattern[j]]
    if not starts.size:
        return []
    begin = int(starts[-1]) + n
    return [int(t) for t in hay[begin:min(begin + k, size)]]


class Drafter:
    """Per-engine draft state: this request's ids (prompt + answer so far) and the previous suggestion."""

    def __init__(self, max_ngram: int = MAX_NGRAM, min_ngram: int = MIN_NGRAM, cool_down: int = COOL_DOWN,
                 prompt_cap: int = DRAFT_TOKENS) -> None:
        self.max_ngram, self.min_ngram = max_ngram, min_ngram
        self.prompt_cap = prompt_cap  # longest draft taken from the prompt or the answer so far
        self.cool_down = cool_down  # 0: never pause
        self.ids = np.zeros(0, dtype=np.int64)  # prompt then answer, with room to grow
        self.size = 0
        self.prompt_len = 0
        self.previous = np.zeros(0, dtype=np.int64)  # the last request's prompt tail + answer
        self.misses = 0  # drafts in a row of which nothing was kept
        self.pause = 0  # tokens left before drafting again

    def begin(self, prompt: list[int], room: int) -> None:
        """A new request: its prompt, and room for ``room`` answer ids."""
        self.ids = np.empty(len(prompt) + room + 1, dtype=np.int64)
        self.ids[:len(prompt)] = prompt
        self.size = self.prompt_len = len(prompt)
        self.misses = self.pause = 0

    def push(self, token: int) -> None:
        """The answer grew by ``token``."""
        if self.size == len(self.ids):
            self.ids = np.concatenate([self.ids, np.empty(len(self.ids), dtype=np.int64)])
        self.ids[self.size] = token
        self.size += 1

    def verified(self, accepted: int) -> None:
        """How much of the last draft the model kept: repeated misses pause drafting for a few tokens."""
        self.misses = 0 if accepted else self.misses + 1
        if self.misses >= MISSES_BEFORE_PAUSE:
            self.misses, self.pause = 0, self.cool_down

    def finish(self) -> None:
        """The request ended: its answer (with a little prompt before it) is the next one's previous suggestion."""
        if self.size > self.prompt_len:
            self.previous = self.ids[max(0, self.prompt_len - PREVIOUS_TAIL):self.size].copy()

    def draft(self, k: int) -> list[int]:
        """Up to ``k`` ids likely to come next: the longest tail (``max_ngram`` down to ``min_ngram`` ids) that
        occurs earlier, in the previous suggestion first, then in the prompt and the answer so far (there at most
        ``prompt_cap`` ids, ``ONE_TOKEN_MATCH_DRAFT`` for a one-id match); the most recent occurrence wins."""
        if k <= 0:
            return []
        if self.pause > 0:
            self.pause -= 1
            return []
        for n in range(min(self.max_ngram, self.size), self.min_ngram - 1, -1):
            pattern = self.ids[self.size - n:self.size]
            found = lookup(self.previous, len(self.previous), pattern, k)
            cap = self.prompt_cap if n > 1 else min(self.prompt_cap, ONE_TOKEN_MATCH_DRAFT)
            if not found and cap > 0:  # prompt_cap 0: drafts only from the previous suggestion
                found = lookup(self.ids, self.size, pattern, min(k, cap))
            if found:
                return found
        return []
