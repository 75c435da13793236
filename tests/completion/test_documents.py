"""Documents: LSP positions in UTF-16, LSP line breaks, incremental edits and incremental parsing."""

from __future__ import annotations

import random

import pytest

from lsp_server.completion import syntax
from lsp_server.completion.documents import (
    MAX_SYNTAX_BYTES,
    Document,
    DocumentStore,
    PositionError,
    UnknownDocumentError,
    line_starts_of,
    splice_line_starts,
)


def fresh_sexp(doc: Document) -> str:
    parser = syntax.get_parser(doc.language_id)
    assert parser is not None
    return str(parser.parse(doc.source_bytes).root_node)


def change(doc: Document, start: tuple[int, int], end: tuple[int, int], text: str) -> None:
    doc.apply_change((*start, *end), text, doc.version + 1)


# -- positions ------------------------------------------------------------------------------------
def test_emoji_counts_two_utf16_units() -> None:
    doc = Document("file:///e.py", "python", 1, "a😀b\nx\n")
    assert doc.offset_at(0, 1) == 1  # before the emoji
    assert doc.offset_at(0, 3) == 2  # after it: 1 + 2 units
    assert doc.offset_at(0, 4) == 3
    assert doc.position_at(2) == (0, 3)
    assert doc.position_at(3) == (0, 4)


def test_position_inside_a_surrogate_pair_rounds_down() -> None:
    doc = Document("file:///e.txt", None, 1, "😀😀")
    assert doc.offset_at(0, 1) == 0
    assert doc.offset_at(0, 3) == 1


def test_cjk_and_tabs_are_one_unit_each() -> None:
    doc = Document("file:///c.txt", None, 1, "中文x\n\t\ty\n")
    assert doc.offset_at(0, 2) == 2
    assert doc.position_at(2) == (0, 2)
    assert doc.offset_at(1, 2) == doc.line_starts[1] + 2
    assert doc.text[doc.offset_at(1, 2)] == "y"


def test_crlf_and_lone_cr_are_line_breaks() -> None:
    doc = Document("file:///r.txt", None, 1, "a\r\nb\rc\nd")
    assert doc.line_count == 4
    assert [doc.line_text(i) for i in range(4)] == ["a", "b", "c", "d"]
    assert doc.offset_at(1, 0) == 3
    assert doc.offset_at(2, 0) == 5
    assert doc.offset_at(0, 9) == 1  # past the line end clamps to before "\r\n"
    assert doc.position_at(2) == (0, 1)  # between "\r" and "\n": the end of line 0


@pytest.mark.parametrize("ch", ["\u2028", "\u2029", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85"])
def test_unicode_separators_are_not_line_breaks(ch: str) -> None:
    doc = Document("file:///u.txt", None, 1, f"a{ch}b\nc")
    assert doc.line_count == 2
    assert doc.line_text(0) == f"a{ch}b"
    assert doc.offset_at(1, 0) == 4


def test_trailing_newline_gives_an_empty_last_line() -> None:
    doc = Document("file:///t.txt", None, 1, "x\n")
    assert doc.line_count == 2
    assert doc.offset_at(1, 0) == 2
    assert Document("file:///t.txt", None, 1, "").line_count == 1


def test_out_of_range_positions_raise_position_error() -> None:
    doc = Document("file:///o.py", "python", 1, "x = 1\ny = 2")
    with pytest.raises(PositionError, match="line 2 is past the end"):
        doc.offset_at(2, 0)
    with pytest.raises(PositionError, match="negative"):
        doc.offset_at(-1, 0)
    with pytest.raises(PositionError):
        doc.offset_at(0, -1)
    with pytest.raises(PositionError):
        doc.position_at(len(doc.text) + 1)
    with pytest.raises(ValueError):  # PositionError is a ValueError
        doc.position_at(-1)
    assert doc.offset_at(1, 99) == len(doc.text)


def test_nul_and_lone_surrogates_do_not_crash() -> None:
    text = "x = '\udc80'\x00\ny = 2\n"
    doc = Document("file:///n.py", "python", 1, text)
    assert doc.tree is not None
    assert doc.position_at(len(text)) == (2, 0)
    change(doc, (1, 4), (1, 5), "3")
    assert doc.text == "x = '\udc80'\x00\ny = 3\n"
    tree = doc.tree
    assert tree is not None and str(tree.root_node) == fresh_sexp(doc)
    assert doc.byte_offset(len(doc.text)) == len(doc.source_bytes)


# -- edits ----------------------------------------------------------------------------------------
def test_incremental_edit_updates_the_tree_incrementally() -> None:
    lines = [f"def f{i}(x):\n    return x + {i}\n" for i in range(200)]
    doc = Document("file:///inc.py", "python", 1, "".join(lines))
    old = doc.tree
    assert old is not None
    change(doc, (101, 15), (101, 17), "y * 3")  # "return x + 50" -> "return x + y * 3"
    assert old.root_node.has_changes  # the old tree was edited with Tree.edit, not thrown away
    new = doc.tree
    assert new is not None and new is not old
    assert str(new.root_node) == fresh_sexp(doc)
    changed = old.changed_ranges(new)
    assert changed and all(r.end_point.row - r.start_point.row <= 1 for r in changed)


def test_several_changes_before_one_parse() -> None:
    doc = Document("file:///b.js", "javascript", 1, "function f(a) {\n  return a;\n}\n")
    assert doc.tree is not None
    change(doc, (1, 10), (1, 10), " + 1")
    change(doc, (1, 0), (1, 0), "  const b = 2;\n")
    change(doc, (0, 11), (0, 12), "x, y")
    assert doc.text == "function f(x, y) {\n  const b = 2;\n  return a + 1;\n}\n"
    tree = doc.tree
    assert tree is not None and str(tree.root_node) == fresh_sexp(doc)


def test_full_replacement_and_clamped_ranges() -> None:
    store = DocumentStore()
    doc = store.open("file:///f.py", "python", 1, "a = 1\n")
    store.change("file:///f.py", None, "b = 2\n", 2)
    assert doc.text == "b = 2\n" and doc.version == 2
    store.change("file:///f.py", (0, 0, 9, 0), "c = 3\n", 3)  # end past the document: clamped
    assert doc.text == "c = 3\n"
    tree = doc.tree
    assert tree is not None and str(tree.root_node) == fresh_sexp(doc)


def test_edits_around_line_breaks_keep_rows_equal_to_lsp_lines() -> None:
    doc = Document("file:///cr.py", "python", 1, "x = 1\ry = 2\r\nz = 3\n")
    tree = doc.tree
    assert tree is not None
    assert [c.start_point.row for c in tree.root_node.named_children] == [0, 1, 2]
    change(doc, (1, 0), (1, 0), "\n")  # the lone "\r" and the new "\n" form one break: still 4 lines
    assert doc.line_count == 4 and doc.line_text(1) == "y = 2"
    tree = doc.tree
    assert tree is not None and str(tree.root_node) == fresh_sexp(doc)
    assert [c.start_point.row for c in tree.root_node.named_children] == [0, 1, 2]


def test_random_edits_match_a_fresh_document() -> None:
    rnd = random.Random(7)
    pieces = ["x", "(", ")", ":", " ", "\n", "\r\n", "\r", "é", "😀", "def ", "    ", "'", "#"]
    doc = Document("file:///r.py", "python", 1, "def f(a):\n    return a\n")
    for step in range(300):
        if step % 5 == 0:  # parse every few edits: edits also accumulate between parses
            tree = doc.tree
            assert tree is not None and str(tree.root_node) == fresh_sexp(doc), step
        a, b = sorted(rnd.randint(0, len(doc.text)) for _ in range(2))
        start, end = doc.position_at(a), doc.position_at(b)
        new = "".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 3)))
        expected = doc.text[: doc.offset_at(*start)] + new + doc.text[doc.offset_at(*end) :]
        change(doc, start, end, new)
        assert doc.text == expected
        assert doc.line_starts == line_starts_of(expected)
    tree = doc.tree
    assert tree is not None and str(tree.root_node) == fresh_sexp(doc)


def test_splice_line_starts_matches_a_rescan() -> None:
    rnd = random.Random(1)
    alphabet = ["a", "\n", "\r", "\r\n", "😀", " "]
    for _ in range(2000):
        text = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 10)))
        a, b = sorted(rnd.randint(0, len(text)) for _ in range(2))
        new = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 3)))
        result = text[:a] + new + text[b:]
        assert splice_line_starts(line_starts_of(text), result, a, b, len(new)) == line_starts_of(result)


# -- syntax registry, large files, store ------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "language"),
    [
        ("a.py", "python"),
        ("a.jsx", "javascriptreact"),
        ("a.tsx", "typescriptreact"),
        ("a.ts", "typescript"),
        ("a.go", "go"),
        ("a.rs", "rust"),
        ("A.java", "java"),
        ("a.h", "c"),
        ("a.hpp", "cpp"),
        ("a.md", None),
    ],
)
def test_language_for_path(path: str, language: str | None) -> None:
    assert syntax.language_for_path(path) == language


@pytest.mark.parametrize("language", sorted(syntax.SUPPORTED_LANGUAGES))
def test_every_supported_language_parses(language: str) -> None:
    doc = Document(f"file:///x.{language}", language, 1, "x\n")
    assert doc.tree is not None


def test_unknown_language_has_no_tree() -> None:
    assert Document("file:///a.md", "markdown", 1, "# hi\n").tree is None
    assert Document("file:///a", None, 1, "hi\n").tree is None


def test_large_documents_keep_text_but_no_tree() -> None:
    text = "x = 1\n" * (MAX_SYNTAX_BYTES // 6 + 1)
    doc = Document("file:///big.py", "python", 1, text)
    assert doc.too_large_for_syntax and doc.tree is None
    change(doc, (0, 0), (1, 0), "")  # now just under the limit: parsed from scratch on demand
    assert not doc.too_large_for_syntax and doc.tree is not None


def test_store_open_change_get_close() -> None:
    store = DocumentStore()
    store.open("file:///s.py", "python", 1, "a\n")
    store.change("file:///s.py", (0, 1, 0, 1), "b", 2)
    assert store.get("file:///s.py").text == "ab\n"
    assert "file:///s.py" in store and len(store) == 1
    store.close("file:///s.py")
    store.close("file:///never-opened.py")  # not an error
    with pytest.raises(UnknownDocumentError, match=r"not open: file:///s\.py"):
        store.get("file:///s.py")
    with pytest.raises(UnknownDocumentError):
        store.change("file:///s.py", None, "", 3)
