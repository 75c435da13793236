"""Open documents: text, LSP positions (UTF-16), and a tree-sitter tree kept up to date incrementally.

Why this module owns so much: every keystroke arrives as an LSP incremental change in UTF-16
line/character units, while Python strings index code points and tree-sitter wants UTF-8 bytes and
``(row, byte column)`` points.  Converting in one place keeps the three coordinate systems consistent.

Units used below:

* *offset*: index into ``Document.text`` (a ``str``, code points);
* *position*: LSP ``(line, character)``, character in UTF-16 code units (an emoji counts 2);
* *byte* / *point*: UTF-8 offsets and ``(row, byte column)`` in ``Document.source_bytes``.

Line breaks are exactly ``\\n``, ``\\r\\n`` and ``\\r`` (LSP), never ``str.splitlines``'s extra ones
(``\\x0b``, ``\\x0c``, ``\\x1c``-``\\x1e``, ``\\x85``, ``\\u2028``, ``\\u2029`` are ordinary characters).

Parsing is lazy and incremental: ``apply_change`` edits the old tree at once (``Tree.edit`` is cheap)
and marks it stale; the first read of ``Document.tree`` re-parses with the edited tree as the old one,
so a burst of keystrokes costs one incremental parse, not one per keystroke.  The line-start index is
built on first use and then spliced on each change (rescanning a 5,000-line file takes ~1 ms, the
splice ~0.1 ms).

Text reaches us as a ``str`` decoded from JSON: NUL characters and lone surrogates are possible.  We
encode with ``errors="surrogatepass"`` everywhere, so byte offsets stay consistent (tree-sitter just
sees invalid UTF-8 there).  Tree-sitter counts rows on ``\\n`` only; to make its rows equal LSP lines
we feed it a lone ``\\r`` as ``\\n`` (same length, so byte offsets are unchanged).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from itertools import accumulate

from tree_sitter import Tree

from lsp_server.completion import syntax
from model_backend.errors import InvalidParamsError

LINE_BREAK = re.compile(r"\r\n|\r|\n")
_LONE_CR = re.compile(rb"\r(?!\n)")

# Above this many UTF-8 bytes a document keeps no tree: a full parse of 1 MB of Python took 70 ms
# (real code) to 130 ms (dense synthetic code) on one core of our 2-core dev box with tree-sitter 0.26,
# and it runs on the event loop; such files are generated or minified, and plain line windows do.
MAX_SYNTAX_BYTES = 1 << 20

Span = tuple[int, int, int, int]  # LSP range flattened: start line, start character, end line, end character


class PositionError(InvalidParamsError, ValueError):
    """An LSP position or offset outside the document."""


class UnknownDocumentError(InvalidParamsError, LookupError):
    """A request for a document that was never opened (or already closed)."""


def utf8_len(s: str) -> int:
    """Length of ``s`` in UTF-8 bytes (lone surrogates count 3, as ``surrogatepass`` writes them)."""
    return len(s) if s.isascii() else len(s.encode("utf-8", "surrogatepass"))


def utf16_len(s: str) -> int:
    """Length of ``s`` in UTF-16 code units (characters outside the BMP count 2)."""
    return len(s) if s.isascii() else len(s.encode("utf-16-le", "surrogatepass")) // 2


def utf16_to_index(s: str, units: int) -> int:
    """Index into ``s`` that is ``units`` UTF-16 units in; past the end clamps, inside a surrogate pair rounds down."""
    if s.isascii() or utf16_len(s) == len(s):  # one unit per character
        return min(units, len(s))
    used = 0
    for index, ch in enumerate(s):
        used += 2 if ord(ch) > 0xFFFF else 1
        if used > units:
            return index
    return len(s)


def line_starts_of(text: str) -> list[int]:
    """Offsets where each line starts (``[0]`` for an empty text; a trailing break adds an empty last line)."""
    if text.count("\r") == text.count("\r\n"):  # every break ends in "\n": split is ~3x faster than the regex
        return list(accumulate((len(part) + 1 for part in text.split("\n")[:-1]), initial=0))
    return [0, *(m.end() for m in LINE_BREAK.finditer(text))]


def splice_line_starts(starts: list[int], text: str, start: int, old_end: int, new_len: int) -> list[int]:
    """Line starts of ``text`` after ``old[start:old_end]`` was replaced by ``new_len`` characters.

    Invariants used: an old line start ``s < start`` is unchanged (its break and the character after
    it are before the edit); an old start ``s >= old_end + 2`` is unchanged up to the shift (its
    break, even a ``\\r\\n`` pair, lies after the edit).  Only the text between is rescanned.
    """
    delta = new_len - (old_end - start)
    head = starts[: max(bisect.bisect_left(starts, start), 1)]
    tail_at = bisect.bisect_left(starts, old_end + 2)
    scan_end = starts[tail_at] + delta if tail_at < len(starts) else len(text)
    middle = [m.end() for m in LINE_BREAK.finditer(text, head[-1], scan_end)]
    if tail_at < len(starts) and middle and middle[-1] == scan_end:
        middle.pop()  # that start is the first of the tail
    return head + middle + [s + delta for s in starts[tail_at:]]


class Document:
    """One open document: its text, line index and (lazily, incrementally parsed) syntax tree."""

    def __init__(self, uri: str, language_id: str | None, version: int, text: str) -> None:
        self.uri = uri
        self.language_id = language_id
        self.version = version
        self._text = text
        self._starts: list[int] | None = None  # line-start offsets; None = recompute on use
        self._source: bytes | None = None  # UTF-8 (surrogatepass), lone "\r" as "\n"; None = re-encode on use
        self._ascii: bool | None = None
        self._tree: Tree | None = None  # last parsed tree, edited by every change since
        self._tree_stale = True  # _tree needs a parse before use
        self._has_grammar = syntax.get_language(language_id) is not None

    # -- state -----------------------------------------------------------------------------------
    @property
    def text(self) -> str:
        """The current text (read-only: change it with ``apply_change``)."""
        return self._text

    @property
    def source_bytes(self) -> bytes:
        """The bytes tree-sitter parses: UTF-8 with lone surrogates passed through, lone ``\\r`` as ``\\n``."""
        if self._source is None:
            data = self._text.encode("utf-8", "surrogatepass")
            self._source = _LONE_CR.sub(b"\n", data) if b"\r" in data else data
        return self._source

    @property
    def too_large_for_syntax(self) -> bool:
        """Whether the document is too big to parse (no tree: plain line windows and textual rules)."""
        return len(self._text) > MAX_SYNTAX_BYTES or len(self.source_bytes) > MAX_SYNTAX_BYTES

    @property
    def tree(self) -> Tree | None:
        """The syntax tree of the current text, or ``None`` (no grammar, or too large); parses on demand."""
        if not self._has_grammar or self.too_large_for_syntax:
            self._tree = None
            return None
        if self._tree_stale:
            parser = syntax.get_parser(self.language_id)
            if parser is None:
                return None
            old = self._tree  # edited by every change since its parse: tree-sitter reuses what is unchanged
            self._tree = parser.parse(self.source_bytes) if old is None else parser.parse(self.source_bytes, old)
            self._tree_stale = False
        return self._tree

    @property
    def line_starts(self) -> list[int]:
        """Offsets where each line starts (computed once, then spliced on every change)."""
        if self._starts is None:
            self._starts = line_starts_of(self._text)
        return self._starts

    @property
    def line_count(self) -> int:
        return len(self.line_starts)

    # -- changes ---------------------------------------------------------------------------------
    def apply_change(self, span: Span | None, new_text: str, version: int | None = None) -> None:
        """Apply one LSP content change (``span`` None = replace everything); never raises on odd ranges.

        Ranges past the end are clamped (some clients send ``(line_count, 0)`` as the document end).
        Steps: 1. LSP range -> offsets; 2. describe the edit to the old tree in old coordinates;
        3. splice the text and line index; 4. finish the edit with the new end and mark the tree stale.
        """
        old = self._text
        start, end = (0, len(old)) if span is None else self._clamped_range(span)
        before = self._edit_before(start, end) if self._tree is not None and span is not None else None
        self._text = old[:start] + new_text + old[end:]
        if self._starts is not None:
            self._starts = splice_line_starts(self._starts, self._text, start, end, len(new_text))
        self._source, self._ascii = None, None
        if version is not None:
            self.version = version
        if before is None:
            self._tree = None  # full replacement (or no tree yet): parse from scratch
        else:
            self._edit_after(before, start + len(new_text))
        self._tree_stale = True

    def _clamped_range(self, span: Span) -> tuple[int, int]:
        start = self._clamped_offset(span[0], span[1])
        end = self._clamped_offset(span[2], span[3])
        return (start, end) if start <= end else (end, start)

    def _clamped_offset(self, line: int, character: int) -> int:
        if line < 0:
            return 0
        if line >= self.line_count:
            return len(self._text)
        return self.offset_at(line, max(character, 0))

    def _edit_before(self, start: int, end: int) -> tuple[int, int, int, tuple[int, int], tuple[int, int]]:
        """(start offset, start byte, old end byte, start point, old end point), all in the old text.

        The edit starts one character early after a ``\\r``: whether that ``\\r`` is lone (fed as
        ``\\n``) depends on the character after it, which this change may replace.
        """
        if start > 0 and self._text[start - 1] == "\r":
            start -= 1
        start_byte = self.byte_offset(start)
        old_end_byte = start_byte + utf8_len(self._text[start:end])
        return start, start_byte, old_end_byte, self.point_at(start), self.point_at(end)

    def _edit_after(self, before: tuple[int, int, int, tuple[int, int], tuple[int, int]], new_end: int) -> None:
        start, start_byte, old_end_byte, start_point, old_end_point = before
        new_end_byte = start_byte + utf8_len(self._text[start:new_end])
        assert self._tree is not None
        self._tree.edit(start_byte, old_end_byte, new_end_byte, start_point, old_end_point, self.point_at(new_end))

    # -- coordinates -----------------------------------------------------------------------------
    def offset_at(self, line: int, character: int) -> int:
        """Offset of an LSP position; a character past the line end clamps to it; a bad line raises."""
        if line < 0 or character < 0:
            raise PositionError(f"negative position {line}:{character} in {self.uri}")
        if line >= self.line_count:
            raise PositionError(f"line {line} is past the end of {self.uri} ({self.line_count} lines)")
        start, end = self.line_span(line)
        return start + utf16_to_index(self._text[start:end], character)

    def position_at(self, offset: int) -> tuple[int, int]:
        """LSP ``(line, UTF-16 character)`` of an offset; an offset inside a ``\\r\\n`` maps to the line end."""
        if not 0 <= offset <= len(self._text):
            raise PositionError(f"offset {offset} is outside {self.uri} ({len(self._text)} characters)")
        line = self.line_of(offset)
        start, end = self.line_span(line)
        return line, utf16_len(self._text[start : min(offset, end)])

    def line_of(self, offset: int) -> int:
        """0-based line holding ``offset`` (an offset inside a line break belongs to the line it ends)."""
        return bisect.bisect_right(self.line_starts, offset) - 1

    def line_span(self, line: int) -> tuple[int, int]:
        """(start, end) offsets of ``line``, the end excluding its line break."""
        starts = self.line_starts
        start = starts[line]
        if line + 1 == len(starts):
            return start, len(self._text)
        end = starts[line + 1]
        return start, end - (2 if self._text.startswith("\r\n", end - 2) and end - 2 >= start else 1)

    def line_text(self, line: int) -> str:
        """Text of ``line`` without its line break."""
        start, end = self.line_span(line)
        return self._text[start:end]

    def byte_offset(self, offset: int) -> int:
        """UTF-8 byte offset (in ``source_bytes``) of a text offset."""
        if self._ascii is None:
            self._ascii = self._text.isascii()
        return offset if self._ascii else utf8_len(self._text[:offset])

    def point_at(self, offset: int) -> tuple[int, int]:
        """Tree-sitter point ``(row, byte column)`` of an offset; rows equal LSP lines (see module docstring)."""
        line = self.line_of(offset)
        return line, utf8_len(self._text[self.line_starts[line] : offset])


class DocumentStore:
    """The open documents by URI."""

    def __init__(self) -> None:
        self._docs: dict[str, Document] = {}

    def open(self, uri: str, language_id: str | None, version: int, text: str) -> Document:
        """Track a document (re-opening replaces it)."""
        doc = self._docs[uri] = Document(uri, language_id, version, text)
        return doc

    def change(self, uri: str, span: Span | None, text: str, version: int | None) -> Document:
        """Apply one content change to an open document."""
        doc = self.get(uri)
        doc.apply_change(span, text, version)
        return doc

    def close(self, uri: str) -> None:
        """Forget a document (closing an unknown one is not an error)."""
        self._docs.pop(uri, None)

    def get(self, uri: str) -> Document:
        """The open document at ``uri``; raises ``UnknownDocumentError`` if it is not open."""
        try:
            return self._docs[uri]
        except KeyError:
            raise UnknownDocumentError(f"document not open: {uri} (no textDocument/didOpen received)") from None

    def __contains__(self, uri: object) -> bool:
        return uri in self._docs

    def __iter__(self) -> Iterator[Document]:
        """The open documents (a snapshot: safe to open or close documents while iterating)."""
        return iter(list(self._docs.values()))

    def __len__(self) -> int:
        return len(self._docs)
