"""Tree-sitter grammars for the languages we complete, and the few tree queries the context needs.

Why: the per-language wheels (``tree-sitter-python`` ...) work offline and each exposes a ``language()``
capsule; ``languages.LANGUAGES`` maps LSP language ids (and file extensions, for the CLI which only has a
path) onto them.  A language without a grammar is not an error: callers get ``None`` and
fall back to plain line windows and textual rules.

Coordinates: every function here takes tree-sitter coordinates, i.e. UTF-8 byte offsets and points
``(row, byte column)``.  ``documents.Document`` feeds tree-sitter bytes in which rows equal LSP lines
(a lone ``\\r`` is fed as ``\\n``), so a node's ``start_point.row`` is directly an LSP line number.

Note: ``Node.first_child_for_byte`` segfaults in py-tree-sitter 0.26 when no child qualifies, so
we only walk with ``TreeCursor.goto_first_child_for_point``, which returns ``None`` instead.
"""

from __future__ import annotations

import importlib
import logging
import threading
from functools import cache

from tree_sitter import Language, Node, Parser, Tree

from lsp_server.completion.languages import (
    ATTACHED_TYPES,
    COMMENT_TYPES,
    CONTAINER_TYPES,
    LANGUAGES,
    STRING_TYPES,
)
from lsp_server.completion.languages import language_for_path as language_for_path  # its old home

log = logging.getLogger(__name__)

SUPPORTED_LANGUAGES: frozenset[str] = frozenset(LANGUAGES)
_LITERAL_TYPES = COMMENT_TYPES | STRING_TYPES


@cache
def get_language(language_id: str | None) -> Language | None:
    """The grammar for an LSP language id, or ``None`` (unknown id, or its wheel is missing)."""
    facts = LANGUAGES.get(language_id or "")
    if facts is None:
        return None
    module_name, function = facts.grammar
    try:
        module = importlib.import_module(module_name)
        return Language(getattr(module, function)())
    except (ImportError, AttributeError, ValueError) as exc:
        log.warning("no tree-sitter grammar for %s (%s): plain line windows instead", language_id, exc)
        return None


_local = threading.local()  # a Parser is not thread-safe: one per language per thread


def get_parser(language_id: str | None) -> Parser | None:
    """This thread's parser for ``language_id``, created on first use; ``None`` without a grammar."""
    parsers: dict[str, Parser] = _local.__dict__.setdefault("parsers", {})
    if language_id is None:
        return None
    parser = parsers.get(language_id)
    if parser is None:
        language = get_language(language_id)
        if language is None:
            return None
        parser = parsers[language_id] = Parser(language)
    return parser


def node_at(tree: Tree, byte: int) -> Node:
    """The smallest node holding the character just before ``byte`` (the one a cursor at ``byte`` follows)."""
    return tree.root_node.descendant_for_byte_range(max(byte - 1, 0), byte) or tree.root_node


def in_comment_or_string(tree: Tree, source: bytes, byte: int) -> bool:
    """Whether a cursor at ``byte`` is inside a comment or a string literal.

    Strictly inside: a cursor before the opening quote or after the closing one is outside.  A line
    comment runs to the end of its line, so a cursor at its end is still inside; a ``/* */`` comment's
    end is outside.
    """
    node: Node | None = node_at(tree, byte)
    while node is not None:
        if node.start_byte < byte:
            if node.type in STRING_TYPES and byte < node.end_byte:
                return True
            if node.type in COMMENT_TYPES and (
                byte < node.end_byte or (byte == node.end_byte and source[byte - 2 : byte] != b"*/")
            ):
                return True
        node = node.parent
    return False


def _end_row(node: Node) -> int:
    """Last row holding a character of ``node`` (a node ending at column 0 ended on the row before)."""
    row, column = node.end_point
    return row - 1 if column == 0 and row > node.start_point.row else row


def last_boundary_row(tree: Tree, hi_row: int, min_row: int) -> int | None:
    """The end row of the shallowest statement-level node ending in rows ``[min_row, hi_row]``, or ``None``.

    Walks down from the root through the nodes that straddle the end of ``hi_row``; inside a
    container (file, block, class body) the sibling before the straddling node is a boundary.
    Shallowest wins: a whole function beats a statement inside one.  A decorator, attribute or
    comment is never the last node (it belongs to the node after it).
    """
    cursor = tree.walk()
    container = True
    while cursor.goto_first_child_for_point((hi_row + 1, 0)) is not None:
        node = cursor.node
        if node is None:
            return None
        before = node.prev_named_sibling if container else None
        while before is not None and before.type in ATTACHED_TYPES:
            before = before.prev_named_sibling
        if before is not None and min_row <= _end_row(before) <= hi_row:
            return _end_row(before)
        if node.start_point.row > hi_row or node.type in _LITERAL_TYPES:
            return None  # nothing straddles the end of hi_row, or it is a literal: no deeper boundary
        container = node.type in CONTAINER_TYPES
    return None
