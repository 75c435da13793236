"""Typing through a suggestion: answer from the last suggestion while the user types exactly what it says.

When the text before the cursor grew by exactly the start of the shown suggestion and nothing after the
cursor changed, the rest of that suggestion is still the answer, so no model call is needed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Shown:
    """A suggestion as shown: the document text around the cursor and the suggestion itself."""

    before: str
    after: str
    text: str


class TypeAhead:
    """The last suggestion per document."""

    def __init__(self) -> None:
        self._shown: dict[str, Shown] = {}

    def remember(self, uri: str, before: str, after: str, text: str) -> None:
        self._shown[uri] = Shown(before, after, text)

    def forget(self, uri: str) -> None:
        self._shown.pop(uri, None)

    def lookup(self, uri: str, before: str, after: str) -> str | None:
        """The rest of the last suggestion if the user has typed a start of it, else None."""
        shown = self._shown.get(uri)
        if shown is None or after != shown.after or len(before) <= len(shown.before):
            return None
        if not before.startswith(shown.before):
            return None
        typed = before[len(shown.before):]
        if not shown.text.startswith(typed) or len(typed) >= len(shown.text):
            return None
        rest = shown.text[len(typed):]
        return rest if rest.strip() else None
