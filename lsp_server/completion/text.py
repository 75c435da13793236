"""Indentation as text: a line's leading whitespace and how wide it is.

Why one home: the context (block mode, window starts), post-processing (where a block ends) and the code
actions (re-indenting a rewrite) must agree on what indentation is, or a suggestion cut by one is judged
by another rule.  Indentation is spaces and tabs only; a tab counts 4 columns wide.
"""

from __future__ import annotations

TAB_WIDTH = 4


def leading_ws(line: str) -> str:
    """The spaces and tabs that start ``line``."""
    return line[: len(line) - len(line.lstrip(" \t"))]


def width(indent: str) -> int:
    """Columns ``indent`` spans, a tab counting ``TAB_WIDTH``."""
    return len(indent.expandtabs(TAB_WIDTH))
