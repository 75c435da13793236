"""Typing through a suggestion: answer from the last suggestions while the user types exactly what one says.

When the text before the cursor grew by exactly the start of a suggestion that was offered (the shown one or
any other the editor can cycle to) and nothing after the cursor changed, the rest of that suggestion is still
an answer, so no model call is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Shown:
    """Suggestions as offered: the document text around the cursor and every item, the shown one first."""

    before: str
    after: str
    texts: tuple[str, ...]


class TypeAhead:
    """The last suggestions per document."""

    def __init__(self) -> None:
        self._shown: dict[str, Shown] = {}

    def remember(self, uri: str, before: str, after: str, texts: Sequence[str]) -> None:
        self._shown[uri] = Shown(before, after, tuple(texts))

    def forget(self, uri: str) -> None:
        self._shown.pop(uri, None)

    def lookup(self, uri: str, before: str, after: str) -> list[str]:
        """The rests of the last suggestions whose start the user has typed, in their order (empty: none)."""
        shown = self._shown.get(uri)
        if shown is None or after != shown.after or len(before) <= len(shown.before):
            return []
        if not before.startswith(shown.before):
            return []
        typed = before[len(shown.before):]
        rests = [text[len(typed):] for text in shown.texts if text.startswith(typed) and len(typed) < len(text)]
        return list(dict.fromkeys(rest for rest in rests if rest.strip()))
