"""Does this code parse?  The parse checks the fit check, the code actions and the benchmarks share.

Why one home: a suggestion is shown, an edit is applied and a benchmark counts a syntax error by the same
rules, so a figure in a benchmark means what the server does.  Two parsers, for two questions:

* tree-sitter (any language with a grammar): ERROR and MISSING nodes, counted, optionally only in some rows.
  It recovers from every error, so it can say *where* code broke and whether an edit added breakage.
* Python's own parser: stricter where tree-sitter's grammar is lenient (indentation errors, which its error
  recovery hides; Python 2 syntax, which its grammar still accepts).
"""

from __future__ import annotations

import ast
import warnings

from tree_sitter import Node, Tree

from lsp_server.completion.syntax import get_parser


def count_errors(root: Node, first: int = 0, last: int | None = None) -> int:
    """ERROR / MISSING nodes under ``root`` that start in rows ``first..last`` (default: all rows).

    Only subtrees that hold an error and overlap the rows are walked, so a clean file costs one node.  An
    unexpected character inside an ERROR node (a leaf tree-sitter flags as an error without ``has_error``) is
    that node's error, not a second one: ``$`` alone is one error.
    """
    last = root.end_point.row if last is None else last
    stack, count = [root], 0
    while stack:
        node = stack.pop()
        if (node.is_error or node.is_missing) and first <= node.start_point.row <= last:
            count += 1
        stack.extend(c for c in node.children if (c.has_error or c.is_missing)
                     and c.start_point.row <= last and c.end_point.row >= first)
    return count


def error_count(tree: Tree) -> int:
    """ERROR and MISSING nodes in ``tree``."""
    return count_errors(tree.root_node)


def error_nodes(language: str | None, source: str, first: int = 0, last: int | None = None) -> int:
    """Tree-sitter ERROR / MISSING nodes in ``source`` that start in rows ``first..last`` (default: the whole
    file); 0 for a language without a grammar."""
    parser = get_parser(language)
    if parser is None:
        return 0
    last = source.count("\n") if last is None else last
    return count_errors(parser.parse(source.encode("utf-8", "surrogatepass")).root_node, first, last)


def first_error_line(tree: Tree) -> int | None:
    """0-based row of the first ERROR / MISSING node (breadth first: the outermost), ``None`` without one."""
    todo = [tree.root_node]
    while todo:
        node = todo.pop(0)
        if node.is_error or node.is_missing:
            return int(node.start_point.row)
        if node.has_error:
            todo.extend(node.children)
    return None


def python_error(source: str, body_may_follow: bool = False) -> tuple[int, str] | None:
    """(0-based row, message) of the first syntax error ``compile`` reports, or ``None`` when it compiles.

    ``body_may_follow``: no code follows the cursor, so a block header there just has no body *yet*.
    """
    try:
        with warnings.catch_warnings():  # e.g. "assertion is always true": the user's code, not ours to report
            warnings.simplefilter("ignore")
            compile(source, "<completion>", "exec", dont_inherit=True)
    except SyntaxError as exc:
        if exc.lineno is None or (body_may_follow and exc.msg.startswith("expected an indented block")):
            return None
        return exc.lineno - 1, exc.msg
    except ValueError:  # a NUL byte in the text: not the suggestion's doing
        return None
    return None


def python_parses(source: str) -> bool:
    """Whether Python's parser accepts ``source`` (``ast.parse``: the grammar only, so a ``return`` outside a
    function, which ``compile`` rejects, still parses)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SyntaxWarning for odd escapes in the user's own code
            ast.parse(source)
        return True
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
