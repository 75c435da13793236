"""What the model sees around the cursor: a token-budgeted prefix/suffix window and the completion mode.

Why it is built this way:

* **Bounded work.**  Tokens are counted one line at a time (the caller caches the counter per string,
  and lines repeat from keystroke to keystroke) and never beyond ``budget * 8`` characters on each
  side, so a 1 MB file costs what a small one does.  Per-line counts are summed: a close, slightly
  high estimate of the window's token count (Code Llama's vocabulary has no piece spanning ``\\n``).
* **A stable start for the KV cache.**  The model server reuses the cached prompt up to the first
  changed token, so the prefix window must not start on another line because the user typed a
  character.  The start depends only on lines *before* the cursor line (the cursor line gets a fixed
  token reserve), is rounded up to a multiple of ``START_QUANTUM`` lines, then snapped forward to the
  least-indented code line within ``SNAP_LINES`` after that (in formatted code, the start of a
  top-level or outermost statement).  It moves only when the budget forces it past another quantum.
* **Whole constructs.**  The suffix window ends at the end of the shallowest syntax node that fits.
* **Line vs block.**  Multi-line ("block") suggestions only where a body is expected: an empty line
  right after a block opener (Python ``:``, ``{`` elsewhere).  Everywhere else one line, which is
  cheaper and what users expect mid-line and in comments or strings.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from tree_sitter import Tree

from lsp_server.completion import languages, syntax
from lsp_server.completion.documents import Document, PositionError
from lsp_server.completion.text import leading_ws, width

CountTokens = Callable[[str], int]
Mode = Literal["line", "block"]

CHARS_PER_TOKEN_CAP = 8  # a window side never spans more than budget * 8 characters
START_QUANTUM = 16  # the prefix window starts on a multiple of 16 lines (or at a syntax boundary just after)
SNAP_LINES = 16  # a window edge moves inward at most this many lines to reach a syntax boundary
CURSOR_LINE_RESERVE = 64  # tokens kept for the cursor line, so typing on it does not move the start
OPENER_LOOKBACK = 50  # lines searched upwards for the block opener
MAX_OPENER_CHARS = 1000  # a longer line is never taken as a block opener (and never scanned)

_WHITESPACE = re.compile(r"\s")
# A line starting like this continues the construct above it: never a window start.
_CONTINUATION = re.compile(r"[)\]}.,&|+\-*?:]|(?:" + "|".join(languages.CONTINUATION_KEYWORDS) + r")\b")


@dataclass(frozen=True)
class ContextBudget:
    """Token budget for each side of the cursor."""

    prefix_tokens: int = 1500
    suffix_tokens: int = 500


@dataclass(frozen=True)
class CompletionContext:
    """The text around the cursor and how the suggestion should be shaped."""

    prefix: str  # document text before the cursor, inside the window (window starts at a line start)
    suffix: str  # document text after the cursor, inside the window (window ends at a line end)
    mode: Mode
    line_prefix: str  # text of the cursor line before the cursor
    line_suffix: str  # text of the cursor line after the cursor (what already follows the cursor)
    indent: str  # indentation of the cursor line (block mode: the body's; a line dedenting below it ends it)
    language: str | None
    prefix_start_line: int  # 0-based first line of the window (for debugging / --show-prompt)
    suffix_end_line: int


def build_context(doc: Document, offset: int, budget: ContextBudget, count_tokens: CountTokens) -> CompletionContext:
    """The completion context at ``offset`` (a text offset, e.g. from ``Document.offset_at``)."""
    if not 0 <= offset <= len(doc.text):
        raise PositionError(f"offset {offset} is outside {doc.uri} ({len(doc.text)} characters)")
    line = doc.line_of(offset)
    line_start, line_end = doc.line_span(line)
    offset = min(offset, line_end)  # inside a line break: the end of the line
    line_prefix, line_suffix = doc.text[line_start:offset], doc.text[offset:line_end]
    tree = doc.tree
    mode, indent = _mode(doc, tree, offset, line, line_prefix, line_suffix)
    start_line, prefix = _prefix_window(doc, offset, line, budget.prefix_tokens, count_tokens)
    end_line, suffix = _suffix_window(doc, tree, offset, line, budget.suffix_tokens, count_tokens)
    return CompletionContext(
        prefix, suffix, mode, line_prefix, line_suffix, indent, doc.language_id, start_line, end_line
    )


# -- windows -------------------------------------------------------------------------------------
def _prefix_window(doc: Document, offset: int, line: int, budget: int, count: CountTokens) -> tuple[int, str]:
    """(first line, prefix text): whole lines before the cursor line within budget, then the cursor line's."""
    line_prefix = doc.text[doc.line_starts[line] : offset]
    cap = budget * CHARS_PER_TOKEN_CAP
    own = count(line_prefix) if len(line_prefix) <= cap else budget + 1
    if own > budget:  # one enormous line: keep its end, cut at whitespace
        return line, _keep_tail(line_prefix, budget, count)
    reserve = max(own, min(CURSOR_LINE_RESERVE, budget))
    first = _first_fitting_line(doc, line, budget - reserve, cap, count)
    start = _stable_start(doc, first, line)
    return start, doc.text[doc.line_starts[start] : offset]


def _first_fitting_line(doc: Document, line: int, tokens: int, chars: int, count: CountTokens) -> int:
    """Earliest line such that the lines from it up to ``line`` (exclusive) fit both budgets."""
    return _walk_fitting(doc, range(line - 1, -1, -1), line, tokens, chars, count)


def _walk_fitting(doc: Document, rows: range, default: int, tokens: int, chars: int, count: CountTokens) -> int:
    """The last of ``rows`` (walked in order, away from the cursor) while the lines so far fit both budgets."""
    text, starts = doc.text, doc.line_starts
    fitted = default
    for row in rows:
        piece = text[starts[row] : starts[row + 1] if row + 1 < len(starts) else len(text)]
        chars -= len(piece)
        if chars < 0:
            break
        tokens -= count(piece)
        if tokens < 0:
            break
        fitted = row
    return fitted


def _stable_start(doc: Document, first: int, line: int) -> int:
    """Round ``first`` up to a quantum, then snap to the least-indented code line just after it.

    Only lines before the cursor line are read, so typing on the cursor line never moves the start.
    (A tree-sitter snap was measured to move in most typing replays: error recovery reshapes the
    tree around an unclosed bracket.  Indentation is what the tree would say when the code parses.)
    """
    if first == 0:
        return 0
    quantised = -(-first // START_QUANTUM) * START_QUANTUM
    if quantised >= line:  # the window is shorter than a quantum: keep what fits
        return first
    best, best_width = quantised, -1
    for row in range(quantised, min(quantised + SNAP_LINES, line)):
        text = doc.line_text(row)
        code = text.lstrip(" \t")
        if not code or _CONTINUATION.match(code):
            continue
        cols = width(text[: len(text) - len(code)])
        if best_width < 0 or cols < best_width:
            best, best_width = row, cols
    return best


def _suffix_window(
    doc: Document, tree: Tree | None, offset: int, line: int, budget: int, count: CountTokens
) -> tuple[int, str]:
    """(last line, suffix text): the cursor line's rest, then whole lines within budget, ending at a syntax boundary."""
    line_suffix = doc.text[offset : doc.line_span(line)[1]]
    cap = budget * CHARS_PER_TOKEN_CAP
    own = count(line_suffix) if len(line_suffix) <= cap else budget + 1
    if own > budget:
        return line, _keep_head(line_suffix, budget, count)
    last = _last_fitting_line(doc, line, budget - own, cap - len(line_suffix), count)
    if tree is not None and line < last < doc.line_count - 1:
        row = syntax.last_boundary_row(tree, last, max(line + 1, last - SNAP_LINES))
        last = row if row is not None else last
    return last, doc.text[offset : doc.line_span(last)[1]]


def _last_fitting_line(doc: Document, line: int, tokens: int, chars: int, count: CountTokens) -> int:
    """Last line such that the lines after ``line`` up to it fit both budgets."""
    return _walk_fitting(doc, range(line + 1, len(doc.line_starts)), line, tokens, chars, count)


def _keep_tail(s: str, budget: int, count: CountTokens) -> str:
    """The longest end of ``s`` within budget that starts after a whitespace (halving until it fits)."""
    size = budget * CHARS_PER_TOKEN_CAP
    while True:
        tail = s[len(s) - size :] if size < len(s) else s
        space = _WHITESPACE.search(tail) if len(tail) < len(s) else None
        tail = tail[space.end() :] if space and space.end() < len(tail) else tail
        if count(tail) <= budget or size <= 1:
            return tail
        size //= 2


def _keep_head(s: str, budget: int, count: CountTokens) -> str:
    """The longest start of ``s`` within budget that ends before a whitespace (halving until it fits)."""
    size = budget * CHARS_PER_TOKEN_CAP
    while True:
        head = s[:size]
        if len(head) < len(s):
            cut = max(head.rfind(" "), head.rfind("\t"))  # a space ends the kept part
            head = head[:cut] if cut > 0 else head
        if count(head) <= budget or size <= 1:
            return head
        size //= 2


# -- mode ----------------------------------------------------------------------------------------
def _mode(
    doc: Document, tree: Tree | None, offset: int, line: int, line_prefix: str, line_suffix: str
) -> tuple[Mode, str]:
    """("line" | "block", indent): block only on a blank line right after a block opener.

    Any text on the cursor line means one line, closing brackets included: at ``{|}`` a block would
    end up glued to the ``}``.  A blank line inside a comment or string (only the tree can tell: the
    line itself is blank) is one line too, whatever the line above looks like.
    """
    own_indent = leading_ws(line_prefix + line_suffix)
    if line_prefix.strip() or line_suffix.strip():
        return "line", own_indent
    if tree is not None and syntax.in_comment_or_string(tree, doc.source_bytes, doc.byte_offset(offset)):
        return "line", own_indent
    opener = _opener_row(doc, line)
    if opener is None:
        return "line", own_indent
    return "block", _body_indent(doc, line, _statement_indent(doc, opener), line_prefix)


def _opener_row(doc: Document, line: int) -> int | None:
    """The previous non-blank, non-comment line if its code ends with a block opener, else ``None``."""
    language = doc.language_id
    facts = languages.facts(language)
    openers = facts.block_opener if facts else languages.UNKNOWN_BLOCK_OPENERS
    for row in range(line - 1, max(line - OPENER_LOOKBACK, 0) - 1, -1):
        text = doc.line_text(row)
        if len(text) > MAX_OPENER_CHARS:  # minified or generated: no block structure worth following
            return None
        code = text[: _comment_start(text, language)].rstrip()
        if code:
            return row if code[-1] in openers else None
    return None


def _statement_indent(doc: Document, row: int) -> str:
    """The indentation of the statement whose header ends on ``row``.

    A header continued over several lines (``def f(a,`` / ``        b):``) is indented by its first line, not
    by the continuation: walk up while the brackets closed so far are not yet opened.
    """
    language = doc.language_id
    depth = 0
    for r in range(row, max(row - OPENER_LOOKBACK, -1), -1):
        text = doc.line_text(r)
        if len(text) > MAX_OPENER_CHARS:
            break
        code = text[: _comment_start(text, language)].rstrip()
        if r == row and code.endswith("{"):
            code = code[:-1]  # the block's own brace is not part of the header's brackets
        depth += _bracket_balance(code, language)
        if depth >= 0:
            return leading_ws(text)
    return leading_ws(doc.line_text(row))


def _bracket_balance(code: str, language: str | None) -> int:
    """Opening minus closing brackets in one line of code, quoted text and ``/* */`` comments skipped."""
    return sum((code[i] in "([{") - (code[i] in ")]}") for i in _code_positions(code, language))


def _body_indent(doc: Document, line: int, opener_indent: str, line_prefix: str) -> str:
    """The body's indentation: the cursor's own when deeper than the opener's, else one level deeper."""
    if width(line_prefix) > width(opener_indent):
        return line_prefix
    if "\t" in opener_indent:
        return opener_indent + "\t"
    return opener_indent + _indent_unit(doc, line)


def _indent_unit(doc: Document, line: int) -> str:
    """The file's usual indentation step, from the nearest 200 lines above (default: tab for Go, else 4 spaces)."""
    steps: Counter[str] = Counter()
    previous: str | None = None
    for row in range(max(line - 200, 0), line):
        text = doc.line_text(row)
        if not text.strip():
            continue
        indent = leading_ws(text)
        if previous is not None and len(indent) > len(previous) and indent.startswith(previous):
            steps[indent[len(previous) :]] += 1
        previous = indent
    if steps:
        return steps.most_common(1)[0][0]
    return "\t" if doc.language_id == "go" else "    "


def _comment_start(line: str, language: str | None) -> int:
    """Index where a comment starts on ``line`` (``len(line)`` if none), from the text alone."""
    facts = languages.facts(language)
    markers = facts.line_comments if facts else languages.UNKNOWN_LINE_COMMENTS
    block_comments = facts.block_comments if facts else True
    for i in _code_positions(line, language):
        if line.startswith(markers, i) or (block_comments and line.startswith("/*", i)):
            return i  # a line comment, or a /* left open (closed ones are skipped)
    return len(line)


def _code_positions(line: str, language: str | None) -> Iterator[int]:
    """Indices of the code characters of ``line``: quoted text (with backslash escapes) and one-line ``/* */``
    comments are skipped; a ``/*`` left open is yielded and ends the scan (the rest of the line is comment)."""
    facts = languages.facts(language)
    quotes, block_comments = (facts.quotes, facts.block_comments) if facts else (languages.UNKNOWN_QUOTES, True)
    quote, i = "", 0
    while i < len(line):
        ch = line[i]
        if quote:
            i += 2 if ch == "\\" else 1
            quote = "" if ch == quote else quote
            continue
        if ch in quotes:
            quote = ch
        elif block_comments and line.startswith("/*", i):
            close = line.find("*/", i + 2)
            if close < 0:
                yield i
                return
            i = close + 1
        else:
            yield i
        i += 1
