"""Does a suggestion fit the code around the cursor?  A parse of the nearby code with the suggestion inserted.

Why: a small model's greedy answer is often code that cannot stand where the cursor is: a block header
(``if x:``) above a line that is not indented under it, a plain statement above a line that is, a bracket
it never closes.  In Python these are exactly the ``IndentationError`` / ``SyntaxError`` a user would get
on accepting the suggestion.  ``CompletionCore`` asks this check before showing a suggestion and, when it
fails, tries the model's next-best alternatives (``completion.py``).

What counts: an error *at the suggestion or at the first code line after it*.  Errors elsewhere (the user
is mid-edit further up, the region is cut mid-statement) say nothing about the suggestion and are ignored,
so a file that is already broken never blocks a suggestion.  On a blank line the suggestion is the whole
line, so it must stand on its own: a header whose body it does not include does not fit, and an error the
blank line caused (a plain statement above an indented body) still counts.  On a line being typed only the
suggestion's own rows count, minus an error the line had before it (an open docstring, an unfinished
call): the rows below may hold errors the unfinished line hid from the parser, and a header's body may
simply not be written yet.

How, per language:

* Python: ``compile()`` of the top-level chunk around the cursor (from the last statement at column 0
  above it to the next one below, at most ``MAX_REGION_LINES`` each way: a few milliseconds).  Python's own
  parser, because tree-sitter's recovers silently from the indentation errors that matter most here.
* Other languages with a grammar: tree-sitter ERROR / MISSING nodes starting in those rows, with the
  suggestion against without it (an error that was already there is not the suggestion's).
* No grammar: every suggestion fits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from lsp_server.completion.documents import Document
from lsp_server.completion.parsing import error_nodes, python_error
from lsp_server.completion.syntax import get_parser

MAX_REGION_LINES = 400  # lines searched (and kept) above and below the cursor line
MAX_REGION_CHARS = 200_000  # a larger region (minified code, huge lines) is not checked: parsing it per answer costs
# A line that starts a top-level Python statement: code at column 0, not a continuation keyword or closer.
_TOP_LEVEL = re.compile(r"(?!(?:else|elif|except|finally)\b)[A-Za-z_@]")

Kind = Literal["python", "tree-sitter", "none"]


@dataclass(frozen=True)
class FitCheck:
    """The code around the cursor, captured when the request is prepared (the document may change later)."""

    kind: Kind
    before: str  # region text up to the cursor; starts at a line start
    after: str  # region text from the cursor on
    language: str | None = None

    def breaks(self, suggestion: str) -> bool:
        """Whether inserting ``suggestion`` at the cursor puts a syntax error at it or at the next code line."""
        if self.kind == "none" or not suggestion:
            return False
        first = self.before.count("\n")  # 0-based row of the cursor line in the region
        added = suggestion.count("\n")  # rows the suggestion adds: later rows move down by this much
        below = _rows_to_next_code(self.after)  # None: no code below (the end of the file or of the region)
        next_code = first + added + below if below is not None else first + added
        if self.kind != "python":
            with_it = error_nodes(self.language, self.before + suggestion + self.after, first, next_code)
            return with_it > self._error_nodes_without
        if self._cursor_line_blank:  # the suggestion is the whole line: it and the next code line must be right
            error = python_error(self.before + suggestion + self.after, body_may_follow=False)
            return error is not None and first <= error[0] <= next_code
        # A line being typed: only errors in the suggestion's own rows, and not one the line had before it (the
        # rows below may hold errors that the unfinished line hid from the parser, and a header's body may follow).
        error = python_error(self.before + suggestion + self.after, body_may_follow=True)
        return error is not None and first <= error[0] <= first + added and error != self._error_without

    @property
    def _cursor_line_blank(self) -> bool:
        return not self.before[self.before.rfind("\n") + 1:].strip() and not self.after.split("\n", 1)[0].strip()

    @cached_property
    def _error_nodes_without(self) -> int:
        """Tree-sitter errors from the cursor line to the next code line without any suggestion (once per request)."""
        first = self.before.count("\n")
        below = _rows_to_next_code(self.after)
        return error_nodes(self.language, self.before + self.after, first, first + (below or 0))

    @cached_property
    def _error_without(self) -> tuple[int, str] | None:
        """The error the file has without any suggestion (a line being typed is often incomplete)."""
        return python_error(self.before + self.after, body_may_follow=True)


NO_CHECK = FitCheck("none", "", "")  # every suggestion fits (no grammar, or the check is off)


def for_cursor(doc: Document, offset: int) -> FitCheck:
    """The check for a suggestion at ``offset`` of ``doc`` (event loop: reads the live text)."""
    language = doc.language_id
    kind: Kind = "python" if language == "python" else "tree-sitter" if get_parser(language) else "none"
    if kind == "none":
        return NO_CHECK
    row = doc.line_of(offset)
    starts, text = doc.line_starts, doc.text
    lo, hi = max(0, row - MAX_REGION_LINES), min(len(starts) - 1, row + MAX_REGION_LINES)
    if kind == "python":
        check = _python_region(text, starts, row, lo, hi, offset)
    else:
        end = starts[hi + 1] if hi + 1 < len(starts) else len(text)
        check = FitCheck(kind, text[starts[lo]:offset], text[offset:end], language)
    return check if len(check.before) + len(check.after) <= MAX_REGION_CHARS else NO_CHECK


def _python_region(text: str, starts: list[int], row: int, lo: int, hi: int, offset: int) -> FitCheck:
    """The top-level chunk around ``row``; inside a chunk longer than the window, the window from its least
    indented line, under an ``if True:`` so that it compiles on its own."""
    def indent(r: int) -> int | None:  # None for a blank line
        end = starts[r + 1] if r + 1 < len(starts) else len(text)
        line = text[starts[r]:end]
        return len(line) - len(line.lstrip(" \t")) if line.strip() else None

    top = next((r for r in range(row, lo - 1, -1) if _TOP_LEVEL.match(text, starts[r])), None)
    if top is None:
        levels = [(level, r) for r in range(lo, row + 1) if (level := indent(r)) is not None]
        top = min(levels)[1] if levels else row
    base = indent(top) or 0
    boundary = next((r for r in range(row + 1, hi + 1)
                     if _TOP_LEVEL.match(text, starts[r]) or (indent(r) or base) < base), None)
    end_row = hi if boundary is None else boundary - 1
    end = starts[end_row + 1] if end_row + 1 < len(starts) else len(text)
    head = "if True:\n" if base else ""
    # The statement after the chunk stands in as `pass`: a header left without its body above it is still an
    # error there, and the statement's own body (outside the region) is not needed.
    tail = "pass\n" if boundary is not None else ""
    return FitCheck("python", head + text[starts[top]:offset], text[offset:end] + tail, "python")


def _rows_to_next_code(after: str) -> int | None:
    """Rows from the cursor line down to the next line with code (0: code after the cursor); None: none."""
    lines = after.split("\n")
    if lines[0].strip():
        return 0
    return next((i for i, line in enumerate(lines) if i and line.strip()), None)
