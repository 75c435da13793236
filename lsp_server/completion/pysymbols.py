"""Python symbols from a tree-sitter tree: import bindings, names used near a line, and definition outlines.

``crossfile`` uses these three views to show the model the definitions a line of code depends on:

* **Bindings** say where a name comes from (``from .rates import tariff`` binds ``tariff`` to the name
  ``tariff`` of the module ``.rates``); only top-level imports count (and those one block down, inside a
  top-level ``try``/``if``), which is where nearly all imports live and keeps the scan to the file's
  top-level statements.
* **References** are the dotted chains (``units.grams_from_pounds``) used in a few rows around the
  cursor, found with a tree-sitter query restricted to those rows, so their cost does not grow with the
  file.  The word being typed (the identifier ending at the cursor) is left out: it changes on every
  keystroke, and the snippets must not (the KV cache keeps a prompt only while its start stays the same).
* **Outlines** are what a reader of another file needs in order to call into it, as valid Python stubs:
  a function's decorators, signature and docstring (else ``...``); a class's header, docstring, fields
  and public method signatures; a module-level assignment's statement.  Bodies are left out: they cost
  tokens and do not say how to call the function.
"""

from __future__ import annotations

from dataclasses import dataclass

from tree_sitter import Node, Query, QueryCursor, Tree

from lsp_server.completion import syntax

DOC_LINES = 4  # a docstring longer than this keeps its first lines (then its closing quotes)
ASSIGNMENT_LINES = 8  # a longer module-level assignment keeps its first lines, then "..."
OUTLINE_LINES = 40  # a class outline is cut after this many lines
CHAIN_LENGTH = 3  # "a.b.c": enough for "package.module.name"
_IMPORTS = frozenset({"import_statement", "import_from_statement", "future_import_statement"})
_BLOCK_STATEMENTS = frozenset({"try_statement", "if_statement"})  # top-level blocks whose imports count


@dataclass(frozen=True)
class Binding:
    """What one imported name refers to."""

    module: str  # dotted module path as written, without the leading dots ("" for ``from . import x``)
    level: int  # number of leading dots (0 = absolute import)
    name: str | None  # the imported name (``from m import name``); None when the name is the module itself


@dataclass(frozen=True)
class Definition:
    """One top-level definition's outline, ready to show."""

    name: str
    line: int  # 0-based first line (decorators included)
    text: str  # Python source, every line ending in "\n"


@dataclass(frozen=True)
class ModuleSymbols:
    """What another file offers: its top-level definitions and its imports (to follow re-exports)."""

    definitions: dict[str, Definition]
    bindings: dict[str, Binding]
    star_imports: tuple[Binding, ...]


# -- imports ---------------------------------------------------------------------------------------
def import_bindings(tree: Tree, source: bytes) -> tuple[dict[str, Binding], tuple[Binding, ...]]:
    """(local name -> binding, star imports) of the module's top-level imports."""
    bindings: dict[str, Binding] = {}
    stars: list[Binding] = []
    for node in _top_level_imports(tree.root_node):
        if node.type == "import_statement":
            bindings.update(_plain_import(node, source))
        else:
            names, star = _from_import(node, source)
            bindings.update(names)
            stars.extend([star] if star else [])
    return bindings, tuple(stars)


def top_level_statements(root: Node, depth: int = 2) -> list[Node]:
    """The module's statements; an ERROR node's children count too.

    While a bracket is left open (``f(a, |``) tree-sitter's error recovery can wrap the whole file in one
    ERROR node; its children are still the statements, and the snippets must not vanish while typing.
    """
    found: list[Node] = []
    for node in root.named_children:
        if node.type == "ERROR" and depth > 0:
            found.extend(top_level_statements(node, depth - 1))
        else:
            found.append(node)
    return found


def _top_level_imports(root: Node) -> list[Node]:
    """Import statements among the top-level statements and one block down inside a top-level try/if."""
    found: list[Node] = []
    for node in top_level_statements(root):
        if node.type in _IMPORTS:
            found.append(node)
        elif node.type in _BLOCK_STATEMENTS:
            for block in node.named_children:
                found.extend(_block_imports(block))
    return found


def _block_imports(node: Node) -> list[Node]:
    """Imports directly inside ``node`` if it is a block, or inside the blocks of its clauses (except/else)."""
    if node.type == "block":
        return [child for child in node.named_children if child.type in _IMPORTS]
    if node.type in ("except_clause", "else_clause", "elif_clause", "finally_clause"):
        return [imp for child in node.named_children if child.type == "block" for imp in _block_imports(child)]
    return []


def _plain_import(node: Node, source: bytes) -> dict[str, Binding]:
    """``import a.b`` binds ``a`` to module ``a``; ``import a.b as c`` binds ``c`` to module ``a.b``."""
    found: dict[str, Binding] = {}
    for child in node.children_by_field_name("name"):
        if child.type == "aliased_import":
            dotted, alias = child.child_by_field_name("name"), child.child_by_field_name("alias")
            if dotted is not None and alias is not None:
                found[_text(alias, source)] = Binding(_text(dotted, source), 0, None)
        else:
            first = _text(child, source).split(".")[0]
            found[first] = Binding(first, 0, None)
    return found


def _from_import(node: Node, source: bytes) -> tuple[dict[str, Binding], Binding | None]:
    """``from [.]m import x [as y]``: y -> (m, level, x); a star import is returned separately."""
    target = node.child_by_field_name("module_name")
    if target is None:
        return {}, None
    module, level = _module_path(target, source)
    found: dict[str, Binding] = {}
    for child in node.children_by_field_name("name"):
        if child.type == "aliased_import":
            dotted, alias = child.child_by_field_name("name"), child.child_by_field_name("alias")
            if dotted is not None and alias is not None:
                found[_text(alias, source)] = Binding(module, level, _text(dotted, source))
        else:
            name = _text(child, source)
            found[name] = Binding(module, level, name)
    star = any(child.type == "wildcard_import" for child in node.named_children)
    return found, Binding(module, level, None) if star else None


def _module_path(node: Node, source: bytes) -> tuple[str, int]:
    """(dotted path, level) of a ``module_name``: ``..pkg.mod`` -> ("pkg.mod", 2)."""
    text = _text(node, source)
    stripped = text.lstrip(".")
    return "".join(stripped.split()), len(text) - len(stripped)


# -- references near the cursor --------------------------------------------------------------------
def references(tree: Tree, source: bytes, rows: tuple[int, int], cursor: tuple[int, int]) -> dict[tuple[str, ...], int]:
    """Dotted chains used in ``rows`` (first, last; inclusive) -> distance in rows to the cursor row.

    ``cursor`` is (row, byte): the identifier ending exactly there is the word being typed, left out.
    """
    query = _identifier_query()
    if query is None:
        return {}
    qc = QueryCursor(query)
    qc.set_point_range((max(rows[0], 0), 0), (rows[1] + 1, 0))
    found: dict[tuple[str, ...], int] = {}
    for node in qc.captures(tree.root_node).get("id", []):
        if node.end_byte == cursor[1] or _is_attribute_name(node) or _in_import(node):
            continue
        chain = _chain(node, source, cursor[1])
        distance = abs(node.start_point.row - cursor[0])
        found[chain] = min(distance, found.get(chain, distance))
    return found


def _identifier_query() -> Query | None:
    """The compiled ``(identifier)`` query (cached on the function: compiling takes ~50 µs)."""
    cached: Query | None = getattr(_identifier_query, "query", None)
    if cached is None:
        language = syntax.get_language("python")
        if language is None:
            return None
        cached = Query(language, "(identifier) @id")
        _identifier_query.query = cached  # type: ignore[attr-defined]
    return cached


def _in_import(node: Node) -> bool:
    """A name in an import statement is a binding, not a use."""
    parent = node.parent
    for _ in range(3):  # identifier < dotted_name < aliased_import < import statement
        if parent is None:
            return False
        if parent.type in _IMPORTS:
            return True
        parent = parent.parent
    return False


def _is_attribute_name(node: Node) -> bool:
    """``y`` in ``x.y``: reached from ``x``'s side, as part of its chain."""
    parent = node.parent
    return parent is not None and parent.type == "attribute" and parent.child_by_field_name("attribute") == node


def _chain(node: Node, source: bytes, cursor_byte: int) -> tuple[str, ...]:
    """``a`` -> ("a",); ``a`` in ``a.b.c`` -> ("a", "b", "c") (at most ``CHAIN_LENGTH`` names).

    The chain stops before a name ending at the cursor (``units.gra|``: that word is still being typed).
    """
    names = [_text(node, source)]
    current = node
    while len(names) < CHAIN_LENGTH:
        parent = current.parent
        if parent is None or parent.type != "attribute" or parent.child_by_field_name("object") != current:
            break
        attribute = parent.child_by_field_name("attribute")
        if attribute is None or attribute.end_byte == cursor_byte:
            break
        names.append(_text(attribute, source))
        current = parent
    return tuple(names)


# -- outlines of another file's definitions --------------------------------------------------------
def module_symbols(tree: Tree, source: bytes) -> ModuleSymbols:
    """Outlines of the module's top-level functions, classes and assignments, plus its imports."""
    definitions: dict[str, Definition] = {}
    for node in top_level_statements(tree.root_node):
        for definition in _definitions(node, source):
            definitions.setdefault(definition.name, definition)  # the first definition of a name wins
    bindings, stars = import_bindings(tree, source)
    return ModuleSymbols(definitions, bindings, stars)


def _definitions(node: Node, source: bytes) -> list[Definition]:
    """The definitions one top-level statement makes (none for most statements)."""
    inner = node.child_by_field_name("definition") if node.type == "decorated_definition" else node
    if inner is None:
        return []
    name = inner.child_by_field_name("name")
    if inner.type == "function_definition" and name is not None:
        return [Definition(_text(name, source), node.start_point.row, _function_outline(node, inner, source))]
    if inner.type == "class_definition" and name is not None:
        return [Definition(_text(name, source), node.start_point.row, _class_outline(node, inner, source))]
    if node.type == "expression_statement":
        text = _assignment_text(node, source)
        return [Definition(n, node.start_point.row, text) for n in _assigned_names(node, source)]
    return []


def _function_outline(outer: Node, func: Node, source: bytes, with_doc: bool = True) -> str:
    """Decorators + ``def ...:`` (from the line start, so the indentation is kept), then docstring or ``...``."""
    colon = _header_colon(func)
    if colon is None:
        return ""
    head = source[_line_start(source, outer.start_byte) : colon.end_byte].decode("utf-8", "replace")
    doc = _docstring(func, source) if with_doc else None
    return f"{head}\n{doc}" if doc else f"{head} ...\n"


def _class_outline(outer: Node, cls: Node, source: bytes) -> str:
    """Decorators + ``class ...:``, docstring, field lines, then public method signatures (and ``__init__``)."""
    colon = _header_colon(cls)
    body = cls.child_by_field_name("body")
    if colon is None or body is None:
        return ""
    lines = [source[_line_start(source, outer.start_byte) : colon.end_byte].decode("utf-8", "replace") + "\n"]
    doc = _docstring(cls, source)
    lines.extend([doc] if doc else [])
    for member in body.named_children:
        lines.extend(_member_lines(member, source))
    if len(lines) == 1:
        lines.append(" " * (cls.start_point.column + 4) + "...\n")
    text = "".join(lines)
    cut = text.split("\n")
    return text if len(cut) <= OUTLINE_LINES + 1 else "\n".join(cut[:OUTLINE_LINES]) + "\n"


def _member_lines(member: Node, source: bytes) -> list[str]:
    """A class member as outline text: a field's line, a public method's signature; else nothing."""
    inner = member.child_by_field_name("definition") if member.type == "decorated_definition" else member
    if inner is None:
        return []
    if inner.type == "function_definition":
        name = inner.child_by_field_name("name")
        method = _text(name, source) if name is not None else "_"
        if method.startswith("_") and method != "__init__":
            return []
        return [_function_outline(member, inner, source, with_doc=False)]
    first = member.named_children[0] if member.named_children else None
    if member.type == "expression_statement" and first is not None and first.type == "assignment":
        return [_line_of(member, source)]
    return []


def _assigned_names(statement: Node, source: bytes) -> list[str]:
    """Names bound by ``x = ...``, ``x: T = ...``, ``a = b = ...`` and ``a, b = ...`` at module level."""
    names: list[str] = []
    node = statement.named_children[0] if statement.named_children else None
    while node is not None and node.type == "assignment":
        left = node.child_by_field_name("left")
        if left is not None and left.type == "identifier":
            names.append(_text(left, source))
        elif left is not None and left.type in ("pattern_list", "tuple_pattern"):
            names.extend(_text(c, source) for c in left.named_children if c.type == "identifier")
        node = node.child_by_field_name("right")
    return names


def _assignment_text(statement: Node, source: bytes) -> str:
    """The statement's lines (a long one: its first lines, then an indented ``...``)."""
    text = source[_line_start(source, statement.start_byte) : statement.end_byte].decode("utf-8", "replace")
    lines = text.split("\n")
    if len(lines) > ASSIGNMENT_LINES:
        lines = [*lines[:ASSIGNMENT_LINES], "    ..."]
    return "\n".join(lines) + "\n"


def _docstring(definition: Node, source: bytes) -> str | None:
    """The docstring's lines with their indentation (at most ``DOC_LINES``, then the closing quotes)."""
    body = definition.child_by_field_name("body")
    first = body.named_children[0] if body is not None and body.named_children else None
    if first is None or first.type != "expression_statement" or first.named_child_count != 1:
        return None
    string = first.named_children[0]
    if string.type != "string":
        return None
    start = _line_start(source, string.start_byte)
    if source[start : string.start_byte].strip():  # on the header's line (``def f(): "doc"``)
        return None
    lines = source[start : string.end_byte].decode("utf-8", "replace").split("\n")
    if len(lines) > DOC_LINES:
        indent = lines[0][: len(lines[0]) - len(lines[0].lstrip())]
        closing = _text(string, source)[-3:]
        lines = [*lines[: DOC_LINES - 1], indent + (closing if closing in ('"""', "'''") else '"""')]
    return "\n".join(lines) + "\n"


def _header_colon(definition: Node) -> Node | None:
    """The ``:`` that ends a def/class header (the anonymous child right before the body)."""
    colon = None
    for child in definition.children:
        if child.type == ":":
            colon = child
        elif child.type == "block":
            break
    return colon


def _line_of(node: Node, source: bytes) -> str:
    """The first line of ``node`` from its line start (indentation included), with its line break."""
    start = _line_start(source, node.start_byte)
    end = source.find(b"\n", node.start_byte)
    return source[start : len(source) if end < 0 else end].decode("utf-8", "replace") + "\n"


def _line_start(source: bytes, byte: int) -> int:
    return source.rfind(b"\n", 0, byte) + 1


def _text(node: Node, source: bytes) -> str:
    return source[node.start_byte : node.end_byte].decode("utf-8", "replace")
