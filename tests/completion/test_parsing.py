"""The shared parse checks: what the fit check, the code actions' edit guard and the benchmarks count as broken."""

from __future__ import annotations

from lsp_server.completion import parsing
from lsp_server.completion.documents import Document


def tree(text: str, language: str = "python"):  # type: ignore[no-untyped-def]
    t = Document("file:///t", language, 1, text).tree
    assert t is not None
    return t


def test_error_nodes_counts_only_the_asked_rows() -> None:
    source = "x = (1,\ny = 2\n\nz = [3\n"  # two unclosed brackets, on rows 0 and 3
    everywhere = parsing.error_nodes("python", source)
    assert everywhere >= 2
    assert parsing.error_nodes("python", source, 3, 3) >= 1
    assert parsing.error_nodes("python", source, 1, 2) == 0
    assert parsing.error_nodes("python", "x = 1\n") == 0
    assert parsing.error_nodes("plaintext", "x = (((") == 0  # no grammar: nothing to count


def test_tree_and_source_counts_agree_and_a_stray_character_is_one_error() -> None:
    for source in ("x = (1,\n", "$", "def f(:\n    pass\n", "a = 1\n"):
        assert parsing.error_count(tree(source)) == parsing.error_nodes("python", source), source
    assert parsing.error_count(tree("$")) == 1


def test_first_error_line_is_zero_based_or_none() -> None:
    assert parsing.first_error_line(tree("a = 1\nb = (\n")) in (1, 2)
    assert parsing.first_error_line(tree("a = 1\n")) is None
    js = tree("function f() {\n  return 1;\n}\nlet x = ;\n", "javascript")
    assert parsing.first_error_line(js) == 3


def test_python_checks_are_stricter_than_tree_sitter() -> None:
    assert parsing.python_error("if x:\ny = 1\n") == (1, "expected an indented block after 'if' statement on line 1")
    assert parsing.python_error("if x:\n", body_may_follow=True) is None  # the body is not written yet
    assert parsing.python_error("x = 1\n") is None
    assert parsing.python_error("x = '\0'\0\n") is None  # a NUL byte: not a suggestion's error
    assert not parsing.python_parses("print `x`\n")  # Python 2, which tree-sitter's grammar accepts
    # ast.parse checks the grammar only: ``return`` outside a function parses, but does not compile
    assert parsing.python_parses("return 1\n") and parsing.python_error("return 1\n") is not None
