"""Turn the model's raw middle into the suggestion to show (or nothing), and stop decoding early.

Why each rule exists (from what users of other completion servers complain about):

* leaked control-token text (``<EOT>``, ``<MID>`` ...) must never reach the editor;
* a suggestion must not run past the current line (line mode) or the current block (block mode);
* it must not re-insert what already follows the cursor: the rest of the cursor line, the closing
  brackets there, or the next lines of the file; a suggestion that rewrites the rest of the line
  (``path, "rb") as f:`` before ``path) as f:``) cannot be shown as an insertion and is dropped;
* a suggestion of only whitespace or only closing punctuation (a lone ``})``) is noise;
* a suggestion that ends in a loop (``1, 1, 1, 1, 1``) is a small model stuck, not code: dropped, and
  decoding stops as soon as the loop shows;
* the exact leading whitespace is kept: a real leading space is part of the code.

Decision: in line mode a suggestion that starts with a newline is dropped (``None``): the user has
not asked for a new line yet; after Enter the request on the new line gets its own (often block)
suggestion.  This also lets ``stop_reason`` stop at the first newline, always.

Line breaks in the raw text (``\\r\\n``, ``\\r``) are normalised to ``\\n``; the editor inserts its own.
"""

from __future__ import annotations

import re
from functools import lru_cache

from lsp_server.completion.context import CompletionContext
from lsp_server.completion.text import leading_ws, width

# Control-token text: everything from one of these on is not code (the model started a new section).
_CUT_TOKENS = re.compile(r"[▁ ]?(?:<EOT>|<PRE>|<SUF>)")
# An end-of-sequence leak, unless the suggestion opened an HTML <s> element itself.
_EOS = re.compile(r"[▁ ]?</s>")
# Control-token text that can appear inside otherwise good text: an echoed <MID>, a leading <s> (BOS).
_MID = re.compile(r"▁?<MID>")
_LEADING_BOS = re.compile(r"^(?:▁?<s>)+")
_CLOSING = ")]}\"'`"
_TRIVIAL = frozenset(_CLOSING + ";,") | frozenset(" \t\n")  # a suggestion made only of these is noise
_PAIRS = {")": "(", "]": "[", "}": "{"}


def stop_reason(text_so_far: str, ctx: CompletionContext) -> bool:
    """Whether the text decoded so far already decides the suggestion (the engine can stop decoding).

    Cheap: called after every decoded token.  Line mode: a newline appeared.  Block mode: a line
    after the first dedents below ``ctx.indent`` (known as soon as its first character is), or a
    completed line repeats the next line of the suffix.
    """
    if _cut_at(text_so_far) < len(text_so_far) or _loops(text_so_far):
        return True
    text = _normalise_breaks(text_so_far)
    if ctx.mode == "line":
        return "\n" in text
    lines = text.split("\n")
    if any(_dedents(line, ctx.indent) for line in lines[1:]):
        return True
    return _repeat_at(lines[:-1], ctx) is not None  # only completed lines can repeat


def finalize(raw: str, ctx: CompletionContext, ended_by_model: bool = True) -> str | None:
    """The suggestion to show for the raw middle ``raw``, or ``None`` when there is nothing worth showing.

    ``ended_by_model``: the model closed the middle itself (EOT).  With code after the cursor on its
    line, only such a middle fits between prefix and suffix; one that ran to a newline or a limit is a
    rewrite of the line, not an insertion.
    """
    if not ended_by_model and _has_code(ctx.line_suffix):
        return None
    if _loops(raw):
        return None
    text = strip_special_tokens(_normalise_breaks(raw))
    lines = text.split("\n")
    lines = lines[:1] if ctx.mode == "line" else _cut_at_dedent(lines, ctx.indent)
    repeat = _repeat_at(lines, ctx)
    lines = lines if repeat is None else lines[:repeat]
    while len(lines) > 1 and not lines[-1].strip():
        lines.pop()  # trailing blank lines
    text = "\n".join(lines)
    if not ctx.line_suffix.strip():
        text = text.rstrip(" \t")  # nothing follows on the line: trailing spaces are just noise
    text = _strip_duplicate_tail(text, ctx.line_suffix)
    if _rewrites_rest_of_line(text, ctx.line_suffix):
        return None
    return text if _worth_showing(text) else None


def strip_special_tokens(text: str) -> str:
    """Remove leaked control-token text.

    Cut at ``<EOT>``, ``<PRE>``, ``<SUF>`` or ``</s>`` (each also as ``▁<EOT>`` ...); drop ``<MID>`` and
    a leading ``<s>``.  An ``<s>`` elsewhere, with its ``</s>``, is an HTML element and stays.
    """
    return _MID.sub("", _LEADING_BOS.sub("", text[: _cut_at(text)]))


def _cut_at(text: str) -> int:
    """Where leaked control-token text ends the suggestion (``len(text)`` if nowhere)."""
    cut = _CUT_TOKENS.search(text)
    end = cut.start() if cut else len(text)
    eos = _EOS.search(text, 0, end)
    if eos and "<s>" not in _LEADING_BOS.sub("", text[: eos.start()]):  # "<s>x</s>" is HTML, not a leak
        end = eos.start()
    return end


def _normalise_breaks(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


# -- block shape ---------------------------------------------------------------------------------
def _dedents(line: str, indent: str) -> bool:
    """Whether a non-blank ``line`` is indented less than ``indent`` (it belongs to an outer block)."""
    return bool(line.strip()) and width(leading_ws(line)) < width(indent)


def _cut_at_dedent(lines: list[str], indent: str) -> list[str]:
    """Lines up to the first one (after the first, which continues the cursor line) that dedents."""
    for i in range(1, len(lines)):
        if _dedents(lines[i], indent):
            return lines[:i]
    return lines


# -- what already follows the cursor -------------------------------------------------------------
@lru_cache(maxsize=64)
def _next_suffix_line(suffix: str) -> str | None:
    """The first non-blank line of the suffix after the cursor line (cached: called per decoded token)."""
    for line in _normalise_breaks(suffix).split("\n")[1:]:
        if line.strip():
            return line
    return None


def _same_line(suggested: str, existing: str) -> bool:
    """Same code: identical up to trailing space, or identical text (any indent) with a word in it.

    A bare ``}`` only matches at the same indentation: an inner block's ``}`` is not the outer one.
    """
    if suggested.rstrip() == existing.rstrip():
        return True
    return suggested.strip() == existing.strip() and any(ch.isalnum() for ch in suggested)


def _repeat_at(lines: list[str], ctx: CompletionContext) -> int | None:
    """Index of the first suggested line that repeats the suffix's next line, or ``None``."""
    existing = _next_suffix_line(ctx.suffix)
    if existing is None:
        return None
    for i, line in enumerate(lines):
        if _same_line(ctx.line_prefix + line if i == 0 else line, existing):
            return i
    return None


def _strip_duplicate_tail(text: str, line_suffix: str) -> str:
    """Drop the end of the suggestion that the rest of the cursor line already provides.

    Either the whole rest of the line (``a, b):`` before ``):``), or a run of closing brackets and
    quotes that the rest of the line starts with (``x)`` before ``)]``); never a closer that closes
    something the suggestion itself opened.
    """
    rest = line_suffix.strip()
    body = text.rstrip(" \t")
    if not rest or not body:
        return text
    if body.endswith(rest) and not _closes_inside(body[: -len(rest)], rest):
        return body[: -len(rest)]
    run = len(body) - len(body.rstrip(_CLOSING))
    for k in range(run, 0, -1):
        tail = body[-k:]
        if rest.startswith(tail) and not _closes_inside(body[:-k], tail):
            return body[:-k]
    return text


LOOP_REPEATS = 4  # a unit repeated this often at the end ...
LOOP_MIN_CHARS = 12  # ... and covering at least this many characters is a loop


def _loops(text: str) -> bool:
    """Whether ``text`` ends with one short unit (1-16 characters) repeated ``LOOP_REPEATS`` times or more."""
    body = text.rstrip()
    for size in range(1, 17):
        unit = body[-size:]
        if len(body) < size * LOOP_REPEATS or not unit.strip():
            continue
        if body.endswith(unit * LOOP_REPEATS) and size * LOOP_REPEATS >= LOOP_MIN_CHARS:
            return True
    return False


def _has_code(line_suffix: str) -> bool:
    """Whether the rest of the cursor line holds more than closing brackets, quotes and punctuation."""
    return bool(line_suffix.strip().strip(_CLOSING + ";:, "))


def _rewrites_rest_of_line(text: str, line_suffix: str) -> bool:
    """Whether the suggestion ends with part of the code after the cursor (3+ characters, not only closers).

    Then the model wrote a new version of the rest of the line; inserted at the cursor, that part
    would appear twice.
    """
    rest, body = line_suffix.strip(), text.rstrip()
    for k in range(len(rest), 2, -1):
        tail = rest[-k:]
        if body.endswith(tail) and tail.strip(_CLOSING + ";:, "):
            return True
    return False


def _closes_inside(kept: str, tail: str) -> bool:
    """Whether a bracket or quote in ``tail`` closes one left open in ``kept``."""
    stack: list[str] = []
    for ch in kept:
        if ch in "([{":
            stack.append(ch)
        elif ch in _PAIRS and stack and stack[-1] == _PAIRS[ch]:
            stack.pop()
    for ch in tail:
        if ch in _PAIRS and stack and stack[-1] == _PAIRS[ch]:
            return True
        if ch in "\"'`" and kept.count(ch) % 2 == 1:
            return True
    return False


def _worth_showing(text: str) -> bool:
    """Not empty, not whitespace, not only closing punctuation."""
    return bool(text.strip()) and not set(text) <= _TRIVIAL
