"""Every per-language fact the server uses, in one registry keyed by LSP language id.

Why one home: adding a language, or checking what one gets, used to mean reading five modules (grammars and
file extensions in ``syntax``, comment markers and block openers in ``context``, what the code actions support
in ``actions.offers``, prompt names and fence tags in ``actions.instruct``) and the Neovim plugin's filetypes.
Now it means reading ``LANGUAGES`` (a test checks that the Neovim default filetypes are exactly its ids).

Two kinds of facts:

* per language (``Facts``): the tree-sitter wheel, file extensions, how line comments start, the block opener,
  quote characters, continuation keywords, the name and Markdown fence tag for Instruct prompts, docstrings;
* per grammar node type (the ``*_TYPES`` sets): tree-sitter node type names, across the grammars above (the
  grammars share most names, so one set each, commented by language, reads better than ten).

A language not in ``LANGUAGES`` (``plaintext``, ``markdown``, ...) gets no grammar, and the textual rules
fall back to what is common to all (``UNKNOWN_*``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath


@dataclass(frozen=True)
class Facts:
    """What the server knows about one language."""

    id: str  # LSP language id (and Neovim filetype)
    name: str  # as an Instruct prompt names it ("Language: TypeScript (TSX)")
    grammar: tuple[str, str]  # (tree-sitter wheel module, function returning the language capsule)
    extensions: tuple[str, ...] = ()  # file suffixes (lower case), for the CLI which only has a path
    fence: str = ""  # Markdown code-fence tag; "" = the id itself
    block_opener: str = "{"  # the last character of a line that opens a block
    line_comments: tuple[str, ...] = ("//",)
    block_comments: bool = True  # ``/* ... */``
    quotes: str = "\"'`"  # characters that open a string literal on one line
    continuation: tuple[str, ...] = ("else",)  # keywords that start a line continuing the construct above it
    docstrings: bool = False  # the "Add docstring" action (a Python function's or class's first statement)

    @property
    def fence_tag(self) -> str:
        return self.fence or self.id


_C_LIKE = ("else", "case", "default")
LANGUAGES: dict[str, Facts] = {f.id: f for f in (
    Facts("python", "Python", ("tree_sitter_python", "language"), (".py", ".pyi", ".pyw"),
          block_opener=":", line_comments=("#",), block_comments=False, quotes="\"'",
          continuation=("else", "elif", "except", "finally"), docstrings=True),
    Facts("javascript", "JavaScript", ("tree_sitter_javascript", "language"), (".js", ".mjs", ".cjs"),
          continuation=(*_C_LIKE, "catch", "finally")),
    Facts("javascriptreact", "JavaScript (JSX)", ("tree_sitter_javascript", "language"),  # the JS grammar parses JSX
          (".jsx",), fence="jsx", continuation=(*_C_LIKE, "catch", "finally")),
    Facts("typescript", "TypeScript", ("tree_sitter_typescript", "language_typescript"), (".ts", ".mts", ".cts"),
          continuation=(*_C_LIKE, "catch", "finally")),
    Facts("typescriptreact", "TypeScript (TSX)", ("tree_sitter_typescript", "language_tsx"), (".tsx",),
          fence="tsx", continuation=(*_C_LIKE, "catch", "finally")),
    Facts("go", "Go", ("tree_sitter_go", "language"), (".go",), continuation=_C_LIKE),
    Facts("rust", "Rust", ("tree_sitter_rust", "language"), (".rs",), quotes='"'),
    Facts("java", "Java", ("tree_sitter_java", "language"), (".java",), quotes="\"'",
          continuation=(*_C_LIKE, "catch", "finally")),
    Facts("c", "C", ("tree_sitter_c", "language"), (".c", ".h"), quotes="\"'", continuation=_C_LIKE),
    Facts("cpp", "C++", ("tree_sitter_cpp", "language"),
          (".cc", ".cpp", ".cxx", ".c++", ".hh", ".hpp", ".hxx", ".h++", ".ipp"), quotes="\"'",
          continuation=(*_C_LIKE, "catch")),
)}  # fmt: skip

# Textual rules for a language outside the registry: either convention may be in use.
UNKNOWN_BLOCK_OPENERS = ":{"
UNKNOWN_LINE_COMMENTS: tuple[str, ...] = ("#", "//")
UNKNOWN_QUOTES = "\"'`"
# Every language's continuation keywords: the window-start rule applies them whatever the language.
CONTINUATION_KEYWORDS: tuple[str, ...] = tuple(dict.fromkeys(k for f in LANGUAGES.values() for k in f.continuation))

_BY_EXTENSION: dict[str, str] = {ext: f.id for f in LANGUAGES.values() for ext in f.extensions}


def facts(language_id: str | None) -> Facts | None:
    """The registry entry for an LSP language id, or ``None`` for a language we have no grammar for."""
    return LANGUAGES.get(language_id or "")


def language_for_path(path: str) -> str | None:
    """The LSP language id for a file name, from its extension; ``None`` when unknown."""
    return _BY_EXTENSION.get(PurePath(path).suffix.lower())


# -- tree-sitter node types, across the grammars above ------------------------------------------------
# Node types whose inside is a comment or a string literal.
COMMENT_TYPES: frozenset[str] = frozenset({"comment", "line_comment", "block_comment", "doc_comment"})
STRING_TYPES: frozenset[str] = frozenset({
    "string", "string_content", "string_fragment", "template_string",              # python, js/ts
    "string_literal", "raw_string_literal", "raw_string_content", "char_literal",  # rust, c, c++
    "interpreted_string_literal", "interpreted_string_literal_content",             # go
    "raw_string_literal_content", "rune_literal",                                   # go
    "character_literal", "text_block", "multiline_string_fragment",                # java
    "system_lib_string",                                                            # c #include <...>
})  # fmt: skip
# Nodes whose children are statements or declarations: the suffix window ends only between such children.
CONTAINER_TYPES: frozenset[str] = frozenset({
    "module", "program", "source_file", "translation_unit",                       # whole files
    "block", "statement_block", "statement_list", "compound_statement",             # bodies
    "class_body", "interface_body", "enum_body", "constructor_body", "switch_body",  # java, js/ts
    "switch_block", "declaration_list", "field_declaration_list",                   # java, rust, c/c++
    "ERROR",  # error recovery flattens statements into an ERROR node
})  # fmt: skip
# Nodes that belong to the node after them: a window never ends right after one.
ATTACHED_TYPES: frozenset[str] = COMMENT_TYPES | {"decorator", "attribute_item", "annotation", "marker_annotation"}
# Definitions an empty code-action selection expands to (innermost first).
DEFINITION_TYPES: frozenset[str] = frozenset({
    "function_definition", "class_definition",                                     # python, c/c++
    "function_declaration", "generator_function_declaration", "method_definition",  # js/ts, go
    "class_declaration", "abstract_class_declaration", "interface_declaration",     # js/ts, java
    "method_declaration", "constructor_declaration", "enum_declaration", "record_declaration",  # java, go
    "type_declaration",                                                             # go
    "function_item", "impl_item", "trait_item", "struct_item", "enum_item", "mod_item",  # rust
    "class_specifier", "struct_specifier", "namespace_definition",                  # c/c++
})  # fmt: skip
# Nodes around a definition that move with it (decorators, ``export``, ``template<...>``).
WRAPPER_TYPES: frozenset[str] = frozenset({"decorated_definition", "export_statement", "template_declaration"})
# Top-level statements an Instruct prompt shows as the file's imports.
IMPORT_TYPES: frozenset[str] = frozenset({
    "import_statement", "import_from_statement", "future_import_statement",  # python, js/ts
    "import_declaration", "package_clause", "package_declaration",           # go, java
    "use_declaration", "preproc_include", "using_declaration",               # rust, c/c++
})  # fmt: skip
# What the "Add docstring" action documents (in a language whose ``Facts.docstrings`` is true: Python).
DOCSTRING_TARGET_TYPES: frozenset[str] = frozenset({"function_definition", "class_definition"})
