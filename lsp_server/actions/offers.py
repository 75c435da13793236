"""Code actions on documents as plain data: what to offer, which range, and the edit an answer becomes.

Why no LSP types and no model here: listing actions happens on every cursor move in some editors, so it
must be cheap (a tree lookup, never a model call) and testable on its own; turning an answer into an edit
is where we protect the user's file (the exact range, the parse check), so it is kept small and explicit.

Ranges are ``documents.Span`` tuples in LSP units (line, UTF-16 character); offsets index ``Document.text``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tree_sitter import Node

from lsp_server.actions import instruct
from lsp_server.completion import languages
from lsp_server.completion.crossfile import uri_to_path
from lsp_server.completion.documents import Document, DocumentStore, PositionError, Span, UnknownDocumentError
from lsp_server.completion.languages import DEFINITION_TYPES, DOCSTRING_TARGET_TYPES, IMPORT_TYPES, WRAPPER_TYPES
from lsp_server.completion.parsing import error_count, first_error_line, python_parses
from lsp_server.completion.text import leading_ws
from model_backend.errors import InvalidParamsError, ServiceError

EXPLAIN, REFACTOR, DOCSTRING = "codellama.explain", "codellama.refactor", "codellama.docstring"
COMMANDS: tuple[str, ...] = (EXPLAIN, REFACTOR, DOCSTRING)
KINDS: dict[str, str] = {EXPLAIN: "refactor.explain", REFACTOR: "refactor.rewrite",
                         DOCSTRING: "refactor.rewrite.docstring"}
TITLES: dict[str, str] = {EXPLAIN: "Explain with Code Llama", REFACTOR: "Refactor with Code Llama",
                          DOCSTRING: "Add docstring with Code Llama"}
NOT_TUNED = " (model not instruction-tuned)"
MAX_INSTRUCTION = 2000  # characters of a refactor instruction

MAX_IMPORTS = 30


class ArgsError(InvalidParamsError, ValueError):
    """Command arguments that do not describe an open document and a range in it."""


class Refusal(ServiceError):
    """An answer that must not become an edit; the message says why."""


@dataclass(frozen=True)
class Offer:
    """One code action to list."""

    title: str
    kind: str
    command: str
    span: Span


@dataclass(frozen=True)
class Target:
    """The text an action works on: its range (as the edit will use it) and offsets."""

    doc: Document
    span: Span
    start: int
    end: int
    instruction: str | None = None

    @property
    def text(self) -> str:
        return self.doc.text[self.start:self.end]


@dataclass(frozen=True)
class Edit:
    """A text edit: replace ``span`` (in the document version it was planned on) with ``new_text``."""

    span: Span
    new_text: str


# -- coordinates -----------------------------------------------------------------------------------
def offset_of_point(doc: Document, row: int, column: int) -> int:
    """Text offset of a tree-sitter point (row = LSP line, column in UTF-8 bytes)."""
    start = doc.line_starts[row]
    end = doc.line_starts[row + 1] if row + 1 < doc.line_count else len(doc.text)
    line = doc.text[start:end]
    if line.isascii():
        return start + min(column, len(line))
    return start + len(line.encode("utf-8", "surrogatepass")[:column].decode("utf-8", "ignore"))


def span_of(doc: Document, start: int, end: int) -> Span:
    return (*doc.position_at(start), *doc.position_at(end))


def offsets(doc: Document, span: Span) -> tuple[int, int]:
    """Offsets of a span (raises ``PositionError`` for a line outside the document)."""
    start, end = doc.offset_at(span[0], span[1]), doc.offset_at(span[2], span[3])
    if start > end:
        raise PositionError(f"range start {span[0]}:{span[1]} is after its end {span[2]}:{span[3]}")
    return start, end


def node_offsets(doc: Document, node: Node) -> tuple[int, int]:
    return offset_of_point(doc, *node.start_point), offset_of_point(doc, *node.end_point)


# -- definitions -----------------------------------------------------------------------------------
def _byte(doc: Document, offset: int) -> int:
    return doc.byte_offset(offset)


def _skip_indent(doc: Document, offset: int) -> int:
    """A cursor in a line's indentation counts as being on the line's first character."""
    line = doc.line_of(offset)
    start, end = doc.line_span(line)
    if doc.text[start:offset].strip():
        return offset
    first = start + len(leading_ws(doc.text[start:end]))
    return max(offset, first) if first < end else offset


def _outer(node: Node) -> Node:
    """The definition with its decorators / ``export`` (they move with it)."""
    while node.parent is not None and node.parent.type in WRAPPER_TYPES:
        node = node.parent
    return node


def enclosing_definitions(doc: Document, start: int, end: int | None = None) -> list[Node]:
    """Definitions containing ``[start, end]``, innermost first (empty without a tree)."""
    tree = doc.tree
    if tree is None:
        return []
    end = start if end is None else end
    node: Node | None = tree.root_node.descendant_for_byte_range(_byte(doc, start), _byte(doc, end))
    found = []
    while node is not None:
        if node.type in DEFINITION_TYPES:
            found.append(node)
        node = node.parent
    return found


def definition_span(doc: Document, node: Node) -> Span:
    """A definition's range from the start of its first line (indentation and decorators included)."""
    outer = _outer(node)
    start, end = node_offsets(doc, outer)
    line_start = doc.line_starts[doc.line_of(start)]
    if not doc.text[line_start:start].strip():
        start = line_start
    return span_of(doc, start, end)


def target(doc: Document, span: Span, instruction: str | None = None) -> Target | None:
    """The selection, or for an empty one the innermost enclosing definition; None when there is nothing."""
    start, end = offsets(doc, span)
    if start == end:
        defs = enclosing_definitions(doc, _skip_indent(doc, start))
        if not defs:
            return None
        span = definition_span(doc, defs[0])
        start, end = offsets(doc, span)
    if not doc.text[start:end].strip():
        return None
    return Target(doc, span, start, end, instruction)


def docstring_target(doc: Document, start: int, end: int) -> Node | None:
    """The Python function or class a docstring action is about: the innermost one holding the range, else
    the first one starting inside it."""
    facts = languages.facts(doc.language_id)
    if facts is None or not facts.docstrings or doc.tree is None:
        return None
    text = doc.text
    s = start + len(text[start:end]) - len(text[start:end].lstrip())
    e = max(s, end - (len(text[start:end]) - len(text[start:end].rstrip())))
    for node in enclosing_definitions(doc, s, e):
        if node.type in DOCSTRING_TARGET_TYPES:
            return node
    lo, hi = _byte(doc, s), _byte(doc, e)
    todo = [doc.tree.root_node]
    while todo:
        node = todo.pop(0)
        if node.type in DOCSTRING_TARGET_TYPES and lo <= node.start_byte < hi:
            return node
        todo.extend(c for c in node.children if c.end_byte > lo and c.start_byte < hi)
    return None


def has_docstring(node: Node) -> bool:
    body = node.child_by_field_name("body")
    first = body.named_children[0] if body is not None and body.named_children else None
    return (first is not None and first.type == "expression_statement" and bool(first.named_children)
            and first.named_children[0].type == "string")


def describe(node: Node) -> str:
    """``function `name``` / ``class `name```, for the docstring prompt."""
    name = node.child_by_field_name("name")
    what = "class" if node.type == "class_definition" else "function"
    return f"{what} `{name.text.decode('utf-8', 'replace') if name is not None and name.text else '?'}`"


# -- listing ---------------------------------------------------------------------------------------
def kind_allowed(kind: str, only: Sequence[str] | None) -> bool:
    """LSP ``context.only``: a kind matches itself and its parents (``refactor`` allows ``refactor.rewrite``)."""
    return not only or any(kind == k or kind.startswith(k + ".") for k in only)


def offers(doc: Document, span: Span, only: Sequence[str] | None = None, instruction_tuned: bool = True) -> list[Offer]:
    """The actions for a selection (or the definition around an empty one); no model involved."""
    where = target(doc, span)
    if where is None:
        return []
    suffix = "" if instruction_tuned else NOT_TUNED
    found = [Offer(TITLES[EXPLAIN] + suffix, KINDS[EXPLAIN], EXPLAIN, where.span)]
    if doc.tree is not None:  # a rewrite is applied only if it parses, so it needs a grammar
        found.append(Offer(TITLES[REFACTOR] + suffix, KINDS[REFACTOR], REFACTOR, where.span))
    node = docstring_target(doc, where.start, where.end)
    if node is not None and not has_docstring(node):
        found.append(Offer(TITLES[DOCSTRING] + suffix, KINDS[DOCSTRING], DOCSTRING, definition_span(doc, node)))
    return [o for o in found if kind_allowed(o.kind, only)]


# -- command arguments -----------------------------------------------------------------------------
def _int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ArgsError(f"{what} must be a non-negative integer, got {value!r}")
    return value


def parse_range(value: Any) -> Span:
    """An LSP Range as JSON (``{"start": {"line", "character"}, "end": {...}}``) → a span."""
    if not isinstance(value, dict) or not all(isinstance(value.get(k), dict) for k in ("start", "end")):
        raise ArgsError(f"the range must be an LSP Range object {{start: {{line, character}}, end: ...}}, "
                        f"got {value!r:.200}")
    start, end = value["start"], value["end"]
    return (_int(start.get("line"), "range.start.line"), _int(start.get("character"), "range.start.character"),
            _int(end.get("line"), "range.end.line"), _int(end.get("character"), "range.end.character"))


def parse_args(command: str, args: Sequence[Any], documents: DocumentStore) -> tuple[Document, Span, str | None]:
    """``[uri, range]`` (refactor: ``[uri, range, instruction?]``) → the open document, the span, the instruction."""
    shape = "[uri, range, instruction?]" if command == REFACTOR else "[uri, range]"
    if not isinstance(args, list | tuple) or not 2 <= len(args) <= (3 if command == REFACTOR else 2):
        count = len(args) if isinstance(args, list | tuple) else "no list"
        raise ArgsError(f"{command} expects arguments {shape}, got {count}")
    uri = args[0]
    if not isinstance(uri, str):
        raise ArgsError(f"{command}: the first argument must be a document URI string, got {uri!r:.100}")
    try:
        doc = documents.get(uri)
    except UnknownDocumentError as exc:
        raise ArgsError(f"{command}: {exc}") from None
    span = parse_range(args[1])
    try:
        offsets(doc, span)
    except PositionError as exc:
        raise ArgsError(f"{command}: range outside the document: {exc}") from None
    instruction = args[2] if len(args) > 2 else None
    if instruction is not None and not isinstance(instruction, str):
        raise ArgsError(f"{command}: the instruction must be a string, got {instruction!r:.100}")
    if instruction is not None and len(instruction) > MAX_INSTRUCTION:
        raise ArgsError(f"{command}: the instruction is longer than {MAX_INSTRUCTION} characters")
    return doc, span, (instruction or None)


# -- what the prompt shows ---------------------------------------------------------------------------
def surrounding(doc: Document, start: int, end: int) -> str:
    """Imports and the signatures of the definitions around the selection, as they appear in the file."""
    tree = doc.tree
    if tree is None:
        return ""
    lines: list[str] = []
    imports = [n for n in tree.root_node.children if n.type in IMPORT_TYPES][:MAX_IMPORTS]
    for node in imports:
        a, b = node_offsets(doc, node)
        lines.append(doc.text[a:b])
    headers = []
    for node in reversed(enclosing_definitions(doc, start, end)):
        a, b = node_offsets(doc, node)
        if (a, b) == (start, end) or (a >= start and b <= end):
            continue  # the selection itself, not around it
        body = node.child_by_field_name("body")
        head_end = offset_of_point(doc, *body.start_point) if body is not None else doc.line_span(doc.line_of(a))[1]
        line_start = doc.line_starts[doc.line_of(a)]
        headers.append(doc.text[line_start:head_end].rstrip())
    if imports and headers:
        lines.append("")
    return "\n".join(lines + headers)


def file_name(uri: str) -> str:
    path = uri_to_path(uri)
    return path.name if path is not None else uri.rsplit("/", 1)[-1]


def selection(where: Target, what: str = "") -> instruct.Selection:
    """The plain-text request for the prompt builder."""
    doc = where.doc
    return instruct.Selection(where.text, doc.language_id, file_name(doc.uri),
                              surrounding(doc, where.start, where.end), what)


# -- answers to edits -------------------------------------------------------------------------------
def eol_of(doc: Document) -> str:
    return "\r\n" if "\r\n" in doc.text else "\n"


def checked_edit(doc: Document, start: int, end: int, span: Span, new_text: str) -> Edit:
    """``Edit(span, new_text)`` if the whole file with it parses with no more errors than now; else ``Refusal``."""
    before = doc.tree
    if before is None:
        raise Refusal(f"no syntax tree for {doc.language_id or 'this language'} here, so the result cannot be "
                      "checked; nothing was changed")
    after_text = doc.text[:start] + new_text + doc.text[end:]
    after = Document(doc.uri, doc.language_id, doc.version, after_text).tree
    assert after is not None
    old, new = error_count(before), error_count(after)
    if new > old:
        line = first_error_line(after)
        where = f", first at line {line + 1}" if line is not None else ""
        raise Refusal(f"the model's code does not parse here ({new - old} new syntax error(s){where}); "
                      "nothing was changed")
    if doc.language_id == "python" and python_parses(doc.text) and not python_parses(after_text):
        raise Refusal("the model's code is not valid Python 3 here (tree-sitter's grammar also accepts some "
                      "Python 2 syntax); nothing was changed")
    return Edit(span, new_text)


def plan_rewrite(where: Target, code: str) -> Edit:
    """The edit replacing exactly the selection with ``code``, re-indented to the selection's place."""
    doc = where.doc
    line = doc.line_of(where.start)
    line_start = doc.line_starts[line]
    eol = eol_of(doc)
    new_text = instruct.reindent(code, doc.text[line_start:where.start], leading_ws(doc.line_text(line)), eol)
    if not new_text.strip():
        raise Refusal("the model's answer has no code; nothing was changed")
    if where.text.endswith(("\n", "\r")):
        new_text += eol
    if new_text == where.text:
        raise Refusal("the model's rewrite is the same as the selection; nothing was changed")
    return checked_edit(doc, where.start, where.end, where.span, new_text)


def plan_docstring(where: Target, content: str) -> Edit:
    """The insertion of ``content`` as a docstring, the first statement of the function's or class's body."""
    doc = where.doc
    node = docstring_target(doc, where.start, where.end)
    if node is None:
        raise Refusal("no Python function or class at this range; nothing was changed")
    if has_docstring(node):
        raise Refusal(f"{describe(node)} already has a docstring; nothing was changed")
    if not content.strip():
        raise Refusal("the model's answer has no docstring text; nothing was changed")
    body = node.child_by_field_name("body")
    assert body is not None
    eol = eol_of(doc)
    at = offset_of_point(doc, *body.start_point)
    line = doc.line_of(at)
    line_start = doc.line_starts[line]
    if not doc.text[line_start:at].strip():  # the body starts on its own line: insert a line before it
        indent = leading_ws(doc.line_text(line))
        new_text = indent + instruct.format_docstring(content, indent, eol) + eol
        at = line_start
    else:  # ``def f(): return 1``: the body moves to its own line under the docstring
        head = leading_ws(doc.line_text(doc.line_of(node_offsets(doc, node)[0])))
        indent = head + ("\t" if head.startswith("\t") else "    ")
        new_text = eol + indent + instruct.format_docstring(content, indent, eol) + eol + indent
    return checked_edit(doc, at, at, span_of(doc, at, at), new_text)
