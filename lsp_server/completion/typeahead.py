"""Typing through a suggestion: answer from the last suggestions while the user types exactly what one says.

When the text before the cursor grew by exactly the start of a suggestion that was offered (the shown one or
any other the editor can cycle to) and nothing after the cursor changed, the rest of that suggestion is still
an answer, so no model call is needed.

It also keeps the suggestions computed ahead (``prefetch``): what the model would suggest once the shown
suggestion is accepted, keyed by the exact text the document will then have around the cursor.
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
        self._ahead: dict[str, Shown] = {}  # per document: suggestions for the text once the shown one is accepted

    def remember(self, uri: str, before: str, after: str, texts: Sequence[str]) -> None:
        self._shown[uri] = Shown(before, after, tuple(texts))

    def forget(self, uri: str) -> None:
        self._shown.pop(uri, None)
        self._ahead.pop(uri, None)

    def remember_ahead(self, uri: str, before: str, after: str, texts: Sequence[str]) -> None:
        """Suggestions computed ahead for the cursor between ``before`` and ``after`` (an accepted suggestion)."""
        self._ahead[uri] = Shown(before, after, tuple(texts))

    def lookup_ahead(self, uri: str, before: str, after: str) -> list[str] | None:
        """The suggestions computed ahead for exactly this text around the cursor (empty: the model had nothing to
        show there), or None when none were computed for it."""
        ahead = self._ahead.get(uri)
        if ahead is None or ahead.before != before or ahead.after != after:
            return None
        return list(ahead.texts)

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
