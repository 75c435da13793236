"""Code actions as plain data: what is offered where, argument checks, and answers turned into checked edits."""

from __future__ import annotations

import ast

import pytest

from lsp_server.actions import instruct
from lsp_server.actions import offers as actions
from lsp_server.actions.assistant import Assistant, is_instruction_tuned
from lsp_server.actions.offers import DOCSTRING, EXPLAIN, REFACTOR, ArgsError, Refusal
from lsp_server.completion.core import CompletionCore
from lsp_server.completion.documents import Document, DocumentStore
from lsp_server.settings import Settings
from model_backend.embedded import WEIGHTS_DIR

SOURCE = '''import os
from typing import Any


class Counter:
    """Counts things."""

    def count(self, items):
        total = 0
        for item in items:
            total += 1
        return total

    @staticmethod
    def empty():
        return 0
'''
URI = "file:///work/counter.py"


def doc(text: str = SOURCE, language: str = "python", uri: str = URI) -> Document:
    return Document(uri, language, 1, text)


def line_of(d: Document, needle: str) -> int:
    return d.text[:d.text.index(needle)].count("\n")


def test_a_selection_gets_explain_refactor_and_docstring() -> None:
    d = doc()
    row = line_of(d, "total = 0")
    selection = (row, 8, row + 2, 0)
    offers = actions.offers(d, selection)
    assert [(o.command, o.kind) for o in offers] == [
        (EXPLAIN, "refactor.explain"), (REFACTOR, "refactor.rewrite"), (DOCSTRING, "refactor.rewrite.docstring")]
    assert [o.title for o in offers] == ["Explain with Code Llama", "Refactor with Code Llama",
                                         "Add docstring with Code Llama"]
    assert offers[0].span == offers[1].span == selection
    def_row = line_of(d, "def count")
    assert offers[2].span == (def_row, 0, def_row + 4, len("        return total"))  # the method it is in


def test_an_empty_selection_means_the_enclosing_definition() -> None:
    d = doc()
    row = line_of(d, "total += 1")
    offers = actions.offers(d, (row, 3, row, 3))
    def_row = line_of(d, "def count")
    assert {o.span for o in offers} == {(def_row, 0, def_row + 4, len("        return total"))}
    decorated = line_of(d, "return 0")
    spans = {o.span for o in actions.offers(d, (decorated, 10, decorated, 10))}
    assert spans == {(line_of(d, "@staticmethod"), 0, decorated, len("        return 0"))}  # decorator included
    assert actions.offers(d, (0, 3, 0, 3)) == []  # an import line: no definition around it
    blank = line_of(d, '"""Counts') + 1
    assert actions.offers(d, (blank, 0, blank, 0))[0].span[0] == line_of(d, "class Counter")


def test_classes_with_a_docstring_get_no_docstring_action() -> None:
    d = doc()
    row = line_of(d, "class Counter")
    assert [o.command for o in actions.offers(d, (row, 2, row, 2))] == [EXPLAIN, REFACTOR]


def test_context_only_filters_by_kind_prefix() -> None:
    d = doc()
    row = line_of(d, "total = 0")
    span = (row, 0, row + 1, 0)
    assert [o.command for o in actions.offers(d, span, ["refactor.rewrite"])] == [REFACTOR, DOCSTRING]
    assert [o.command for o in actions.offers(d, span, ["refactor"])] == [EXPLAIN, REFACTOR, DOCSTRING]
    assert [o.command for o in actions.offers(d, span, ["refactor.explain"])] == [EXPLAIN]
    assert actions.offers(d, span, ["quickfix"]) == []


def test_titles_say_when_the_model_is_not_instruction_tuned() -> None:
    d = doc()
    offers = actions.offers(d, (8, 0, 9, 0), instruction_tuned=False)
    assert offers and all(o.title.endswith(" (model not instruction-tuned)") for o in offers)


def test_listing_never_needs_a_model() -> None:
    core = CompletionCore(Settings())  # nothing loaded, and nothing will be
    assistant = Assistant(core)
    assert assistant.instruction_tuned_hint() is False  # the embedded model, judged from its files
    assert actions.offers(doc(), (8, 0, 9, 0), instruction_tuned=assistant.instruction_tuned_hint())
    assert core.loaded is None and core.engine is None and assistant._own is None


def test_instruction_tuned_is_read_from_the_checkpoint(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert not is_instruction_tuned(None, WEIGHTS_DIR)
    assert is_instruction_tuned("codellama/CodeLlama-7b-Instruct-hf", tmp_path)
    hub = tmp_path / "models--codellama--CodeLlama-13b-Instruct-hf" / "snapshots" / "abc"
    hub.mkdir(parents=True)
    assert is_instruction_tuned(None, hub)
    (hub / "config.json").write_text('{"instruction_tuned": false}')
    assert not is_instruction_tuned(None, hub)  # an explicit flag wins over the name


def test_other_languages_get_explain_and_refactor_only() -> None:
    js = doc("function add(a, b) {\n  return a + b;\n}\n", "javascript", "file:///work/a.js")
    offers = actions.offers(js, (1, 4, 1, 4))
    assert [o.command for o in offers] == [EXPLAIN, REFACTOR]
    assert offers[0].span == (0, 0, 2, 1)
    plain = doc("some notes\nmore notes\n", "plaintext", "file:///work/a.txt")
    assert [o.command for o in actions.offers(plain, (0, 0, 1, 4))] == [EXPLAIN]  # no grammar: no checked rewrite
    assert actions.offers(plain, (0, 2, 0, 2)) == []


def store() -> DocumentStore:
    s = DocumentStore()
    s.open(URI, "python", 1, SOURCE)
    return s


def rng(a: int, b: int, c: int, d: int) -> dict:
    return {"start": {"line": a, "character": b}, "end": {"line": c, "character": d}}


def test_arguments_are_checked_with_clear_messages() -> None:
    docs = store()
    d, span, instruction = actions.parse_args(REFACTOR, [URI, rng(8, 0, 9, 0), "inline it"], docs)
    assert (d.uri, span, instruction) == (URI, (8, 0, 9, 0), "inline it")
    assert actions.parse_args(EXPLAIN, (URI, rng(8, 0, 9, 0)), docs)[2] is None
    bad = [
        (EXPLAIN, [], "expects arguments \\[uri, range\\], got 0"),
        (EXPLAIN, [URI, rng(0, 0, 0, 1), "extra"], "got 3"),
        (REFACTOR, [URI], "\\[uri, range, instruction\\?\\]"),
        (EXPLAIN, [42, rng(0, 0, 0, 1)], "URI string"),
        (EXPLAIN, ["file:///nowhere.py", rng(0, 0, 0, 1)], "not open"),
        (EXPLAIN, [URI, "0:0-1:0"], "LSP Range"),
        (EXPLAIN, [URI, {"start": {"line": 0, "character": 0}}], "LSP Range"),
        (EXPLAIN, [URI, rng(0, -1, 0, 1)], "non-negative"),
        (EXPLAIN, [URI, rng(0, 0, True, 1)], "non-negative integer"),
        (EXPLAIN, [URI, rng(0, 0, 400, 0)], "outside the document.*line 400"),
        (EXPLAIN, [URI, rng(5, 0, 2, 0)], "after its end"),
        (REFACTOR, [URI, rng(0, 0, 0, 1), 7], "instruction must be a string"),
    ]
    for command, args, message in bad:
        with pytest.raises(ArgsError, match=message):
            actions.parse_args(command, args, docs)


def target_of(d: Document, needle: str, through: str | None = None) -> actions.Target:
    start = d.text.index(needle)
    end = d.text.index(through, start) + len(through) if through else start + len(needle)
    where = actions.target(d, actions.span_of(d, start, end))
    assert where is not None
    return where


def test_a_rewrite_replaces_exactly_the_selection_re_indented() -> None:
    d = doc()
    where = target_of(d, "        total = 0\n", "total += 1\n")
    edit = actions.plan_rewrite(where, instruct.extract_code("```python\ntotal = len(list(items))\n```"))
    assert edit.span == where.span
    assert edit.new_text == "        total = len(list(items))\n"
    result = d.text[:where.start] + edit.new_text + d.text[where.end:]
    assert ast.parse(result) and "total = len(list(items))\n        return total" in result


def test_a_rewrite_that_does_not_parse_is_refused() -> None:
    d = doc()
    where = target_of(d, "total = 0")
    with pytest.raises(Refusal, match="does not parse"):
        actions.plan_rewrite(where, "total = (")
    with pytest.raises(Refusal, match="not valid Python 3"):  # tree-sitter accepts backtick strings
        actions.plan_rewrite(where, "total = `0`")
    with pytest.raises(Refusal, match="no code"):
        actions.plan_rewrite(where, "\n\n")
    with pytest.raises(Refusal, match="same as the selection"):
        actions.plan_rewrite(where, "total = 0")


def test_errors_already_in_the_file_do_not_block_a_rewrite_elsewhere() -> None:
    d = doc(SOURCE + "\ndef broken(:\n    pass\n")
    where = target_of(d, "total = 0")
    assert actions.plan_rewrite(where, "total = 1").new_text == "total = 1"
    assert actions.error_count(d.tree) > 0  # type: ignore[arg-type]


def test_a_docstring_becomes_the_first_statement_of_the_body() -> None:
    d = doc()
    where = target_of(d, "    def count", "return total")
    edit = actions.plan_docstring(where, "Count the items.\n\nReturns how many there are.")
    row = line_of(d, "total = 0")
    assert edit.span == (row, 0, row, 0)
    assert edit.new_text == '        """Count the items.\n\n        Returns how many there are.\n        """\n'
    result = d.text[:where.doc.line_starts[row]] + edit.new_text + d.text[where.doc.line_starts[row]:]
    method = ast.parse(result).body[2].body[1]  # type: ignore[attr-defined]
    assert ast.get_docstring(method) == "Count the items.\n\nReturns how many there are."


def test_a_docstring_for_a_one_line_function_moves_the_body_down() -> None:
    d = doc("def one(): return 1\n")
    where = target_of(d, "def one")
    edit = actions.plan_docstring(where, "Return one.")
    result = d.text[:11] + edit.new_text + d.text[11:]
    assert edit.span == (0, 11, 0, 11)
    assert ast.get_docstring(ast.parse(result).body[0]) == "Return one."  # type: ignore[arg-type]


def test_a_docstring_is_refused_where_it_cannot_go() -> None:
    d = doc()
    with pytest.raises(Refusal, match="already has a docstring"):
        actions.plan_docstring(target_of(d, "class Counter"), "Things.")
    with pytest.raises(Refusal, match="no Python function or class"):
        actions.plan_docstring(target_of(d, "import os"), "Imports.")
    with pytest.raises(Refusal, match="no docstring text"):
        actions.plan_docstring(target_of(d, "def count"), "  ")


def test_the_prompt_sees_imports_and_the_enclosing_signatures() -> None:
    d = doc()
    where = target_of(d, "total = 0")
    assert actions.surrounding(d, where.start, where.end) == (
        "import os\nfrom typing import Any\n\nclass Counter:\n    def count(self, items):")
    sel = actions.selection(where)
    assert (sel.code, sel.language, sel.file_name) == ("total = 0", "python", "counter.py")
    whole = target_of(d, "    def count", "return total")
    assert actions.surrounding(d, whole.start, whole.end).endswith("class Counter:")  # not itself


def test_positions_after_wide_characters() -> None:
    d = doc('s = "😀 é"\n\ndef f():\n    return "😀"\n')
    row = 3
    offers = actions.offers(d, (row, 8, row, 8))
    assert offers[0].span == (2, 0, 3, len('    return "') + 2 + 1)  # UTF-16: the emoji counts 2
    where = actions.target(d, offers[0].span)
    assert where is not None and where.text == 'def f():\n    return "😀"'
