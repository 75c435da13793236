"""Context windows (budget, line and syntax boundaries, stable start) and line/block mode decisions."""

from __future__ import annotations

import time
from functools import lru_cache

import pytest

from lsp_server.completion import syntax
from lsp_server.completion.context import CHARS_PER_TOKEN_CAP, CompletionContext, ContextBudget, build_context
from lsp_server.completion.documents import MAX_SYNTAX_BYTES, Document

BUDGET = ContextBudget(prefix_tokens=300, suffix_tokens=100)


def count(s: str) -> int:
    return len(s) // 3 + 1


def at_bar(source: str, language: str | None, budget: ContextBudget = BUDGET) -> CompletionContext:
    """Context at the ``|`` in ``source`` (the bar is removed)."""
    offset = source.index("|")
    doc = Document("file:///t", language, 1, source.replace("|", "", 1))
    return build_context(doc, offset, budget, count)


def python_file(functions: int, decorator: str = "") -> str:
    body = "".join(f"    v{j} = compute(x, {j})\n" for j in range(8))
    return "".join(f"{decorator}def f{i}(x):\n{body}    return v7\n\n\n" for i in range(functions))


def tokens_per_line(text: str) -> int:
    return sum(count(piece) for piece in text.splitlines(keepends=True))


# -- windows ---------------------------------------------------------------------------------------
def test_windows_fit_the_budget_and_cut_at_lines() -> None:
    doc = Document("file:///w.py", "python", 1, python_file(300))
    offset = doc.offset_at(1501, 8)
    ctx = build_context(doc, offset, BUDGET, count)
    assert ctx.prefix_start_line > 0 and ctx.suffix_end_line < doc.line_count - 1  # both sides were cut
    assert tokens_per_line(ctx.prefix) <= BUDGET.prefix_tokens
    assert tokens_per_line(ctx.suffix) <= BUDGET.suffix_tokens
    assert ctx.prefix == doc.text[doc.line_starts[ctx.prefix_start_line] : offset]  # starts at a line start
    assert ctx.suffix == doc.text[offset : doc.line_span(ctx.suffix_end_line)[1]]  # ends at a line end
    assert ctx.line_prefix == "    v0 =" and ctx.line_suffix == " compute(x, 0)"


def test_prefix_starts_at_a_top_level_line_and_suffix_ends_a_function() -> None:
    doc = Document("file:///w.py", "python", 1, python_file(300))
    ctx = build_context(doc, doc.offset_at(1501, 8), BUDGET, count)
    assert ctx.prefix.startswith("def f")  # the least-indented line just after the quantised start
    assert ctx.suffix.endswith("    return v7")  # the end of the last whole function that fits


@pytest.mark.parametrize("header", ["@cache\n", "# the next function\n"])
def test_suffix_never_ends_on_what_belongs_to_the_next_function(header: str) -> None:
    doc = Document("file:///d.py", "python", 1, python_file(300, decorator=header))
    ends = set()
    for line in range(1500, 1530):
        ctx = build_context(doc, doc.offset_at(line, 0), BUDGET, count)
        assert not ctx.suffix.endswith(header.strip())
        ends.add(ctx.suffix.rsplit("\n", 1)[-1])
    assert "    return v7" in ends


def test_whole_small_file_is_used() -> None:
    ctx = at_bar("import os\n\ndef f():\n    return |os.sep\n\nprint(f())\n", "python")
    assert ctx.prefix == "import os\n\ndef f():\n    return "
    assert ctx.suffix == "os.sep\n\nprint(f())\n"
    assert (ctx.prefix_start_line, ctx.suffix_end_line) == (0, 6)


def test_prefix_start_is_stable_while_typing() -> None:
    """The KV cache reuses the prompt only if the window start stays put keystroke after keystroke."""
    doc = Document("file:///s.py", "python", 1, python_file(200))
    line = 1203  # inside f120's body
    doc.apply_change((line, 0, line, 0), "    \n", 2)
    starts = set()
    for i, ch in enumerate("total = compute(items[0], {'k': (x"):  # unclosed brackets on the way
        doc.apply_change((line, 4 + i, line, 4 + i), ch, doc.version + 1)
        ctx = build_context(doc, doc.offset_at(line, 5 + i), BUDGET, count)
        starts.add(ctx.prefix_start_line)
    assert len(starts) == 1 and starts.pop() > 0


def test_prefix_start_is_stable_while_typing_javascript() -> None:
    body = "".join(f"  const v{j} = compute(x, {j});\n" for j in range(6))
    text = "".join(f"function f{i}(x) {{\n{body}  return v5;\n}}\n\n" for i in range(150))
    doc = Document("file:///s.js", "javascript", 1, text)
    line = 9 * 100 + 3
    starts = set()
    for i, ch in enumerate("if (a && b.c(d[0]) {"):
        doc.apply_change((line, 2 + i, line, 2 + i), ch, doc.version + 1)
        starts.add(build_context(doc, doc.offset_at(line, 3 + i), BUDGET, count).prefix_start_line)
    assert len(starts) == 1


def test_huge_single_line_is_cut_at_whitespace() -> None:
    words = " ".join(f"word{i}" for i in range(40_000))  # one ~300 kB line, e.g. minified code
    mid = len(words) // 2
    doc = Document("file:///min.js", "javascript", 1, words)
    ctx = build_context(doc, mid, BUDGET, count)
    assert count(ctx.prefix) <= BUDGET.prefix_tokens and count(ctx.suffix) <= BUDGET.suffix_tokens
    assert words[:mid].endswith(ctx.prefix) and words[mid - len(ctx.prefix) - 1] == " "
    assert words[mid:].startswith(ctx.suffix) and words[mid + len(ctx.suffix)] == " "


def test_one_megabyte_file_costs_a_bounded_window() -> None:
    text = python_file(MAX_SYNTAX_BYTES // len(python_file(1)) + 100)
    assert len(text) > MAX_SYNTAX_BYTES
    doc = Document("file:///big.py", "python", 1, text)
    counted: list[int] = []

    def counting(s: str) -> int:
        counted.append(len(s))
        return count(s)

    offset = doc.offset_at(doc.line_count // 2, 4)
    assert doc.line_count > 40_000  # builds the line index: once per document version, not per request
    t0 = time.perf_counter()
    ctx = build_context(doc, offset, ContextBudget(), counting)
    elapsed = time.perf_counter() - t0
    assert doc.tree is None  # too large to parse: plain line windows
    assert sum(counted) <= (1500 + 500) * CHARS_PER_TOKEN_CAP
    assert len(ctx.prefix) + len(ctx.suffix) <= (1500 + 500) * CHARS_PER_TOKEN_CAP
    assert elapsed < 0.05


def test_context_on_a_5000_line_file_is_fast() -> None:
    doc = Document("file:///f.py", "python", 1, python_file(460))  # ~5,000 lines
    assert doc.line_count > 5000 and doc.tree is not None
    cached = lru_cache(maxsize=None)(count)
    offset = doc.offset_at(2500, 8)
    build_context(doc, offset, ContextBudget(), cached)  # warm the token cache, as while typing
    t0 = time.perf_counter()
    for _ in range(20):
        build_context(doc, offset, ContextBudget(), cached)
    assert (time.perf_counter() - t0) / 20 < 0.005


@pytest.mark.parametrize(
    ("language", "source", "inside"),
    [
        ("python", 'x = |"ab"', False),
        ("python", 'x = "|ab"', True),
        ("python", 'x = "ab|"', True),
        ("python", 'x = "ab"|', False),
        ("python", "x = 1  # note|", True),  # a line comment runs to the end of its line
        ("python", "# note\n|x = 1", False),
        ("c", "/* note */|", False),
        ("c", "/* note |*/", True),
        ("c", "// note|", True),
        ("rust", "let c = '|a';", True),
        ("go", "s := `raw|`", True),
    ],
)
def test_in_comment_or_string_boundaries(language: str, source: str, inside: bool) -> None:
    offset = source.index("|")
    doc = Document("file:///t", language, 1, source.replace("|", "", 1))
    assert doc.tree is not None
    assert syntax.in_comment_or_string(doc.tree, doc.source_bytes, doc.byte_offset(offset)) is inside


# -- mode ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("language", "source", "indent"),
    [
        ("python", "def f(x):\n    |", "    "),
        ("python", "def f(x):\n|", "    "),  # col 0: the opener's indent + one level
        ("python", "class A:\n  def f(self):\n|\n", "    "),  # 2-space file
        ("python", "if x:  # note\n    |\n", "    "),  # a trailing comment on the opener
        ("python", "def f():\n    # todo\n\n|", "    "),  # comment and blank lines in between
        # a header continued over lines: the body goes one level under the header's first line
        ("python", "def g():\n    return 1\n\n\ndef f(a,\n      b):\n|", "    "),
        ("python", "class A:\n    def f(self, a,\n          b=')'):\n|", "        "),  # a quoted bracket
        ("python", "def f(\n    a,\n):\n|", "    "),
        ("python", "def g():\n    if x:\n        for k in (1,\n                  2):\n|", "            "),
        ("c", "int g(void) {\n    return 1;\n}\nint f(int a,\n      int b) {\n|\n}\n", "    "),
        ("javascript", "function g() {\n  return 1;\n}\nfunction f() {\n|\n}\n", "  "),  # inferred step
        ("typescriptreact", "function f(): void {\n  |\n}\n", "  "),
        ("go", "package m\n\nfunc f() {\n|\n}\n", "\t"),
        ("rust", "fn f() {\n    |\n}\n", "    "),
        ("c", "int main(void) {\n    |\n}\n", "    "),
        ("cpp", "namespace n {\nvoid f() {\n|\n}\n}\n", "    "),
        ("java", "class A {\n  void f() {\n    |\n  }\n}\n", "    "),
        ("plaintext", "foo {\n  |", "  "),  # no grammar: textual rules
        (None, "key:\n|", "    "),
    ],
)
def test_block_mode_after_a_block_opener(language: str | None, source: str, indent: str) -> None:
    ctx = at_bar(source, language)
    assert (ctx.mode, ctx.indent) == ("block", indent)


@pytest.mark.parametrize(
    ("language", "source"),
    [
        ("python", "x = foo(|)"),  # mid-line
        ("python", "def f(x):|"),  # end of the opener line itself
        ("python", "def f(x):\n    y = 1\n    |"),  # not the first line of the body
        ("python", 'x = """\nif x:\n|\n"""\n'),  # inside a string
        ("python", "# if x:\n|\n"),  # the "opener" is a comment
        ("javascript", "const s = `\nif (x) {\n|\n`;\n"),  # inside a template string
        ("javascript", "// call f() {\n|\n"),
        ("go", "package m\nvar s = `\nfunc f() {\n|\n`\n"),  # inside a raw string
        ("rust", "/*\nfn f() {\n|\n*/\n"),  # inside a block comment
        ("c", "/*\n if (x) {\n|\n*/\n"),
        ("c", "int f(void) {|}"),  # closing brace after the cursor: one line
        ("plaintext", "hello wor|"),
    ],
)
def test_line_mode(language: str | None, source: str) -> None:
    assert at_bar(source, language).mode == "line"


def test_line_mode_indent_is_the_cursor_lines() -> None:
    ctx = at_bar("def f():\n    x = 1\n    return |x\n", "python")
    assert (ctx.mode, ctx.indent, ctx.line_prefix, ctx.line_suffix) == ("line", "    ", "    return ", "x")


def test_unknown_language_and_empty_document() -> None:
    ctx = at_bar("|", None)
    assert (ctx.prefix, ctx.suffix, ctx.mode, ctx.language) == ("", "", "line", None)
    ctx = at_bar("some text\nmore |text\n", "markdown")
    assert ctx.prefix == "some text\nmore " and ctx.suffix == "text\n" and ctx.language == "markdown"
