"""Cross-file context: import resolution, what is shown, stable order, the budget, and what is never read."""

from __future__ import annotations

from pathlib import Path

import pytest

from lsp_server.completion import crossfile
from lsp_server.completion.crossfile import CrossFile, Snippet, marker, render, select
from lsp_server.completion.documents import Document
from lsp_server.completion.pysymbols import import_bindings, module_symbols
from lsp_server.completion.syntax import get_parser

RATES = '''"""Freight rates."""

ZONE_PERCENT = {"K": 100, "M": 145}


def tariff_cents(billable: int, zone: str, express: bool = False) -> int:
    """The tariff for ``billable`` grams into ``zone``."""
    return billable * ZONE_PERCENT[zone]


def _private(x):
    return x


class Ledger:
    """Postings in order."""

    opening: int = 0

    def book(self, cents: int, account: str) -> int:
        return 1

    def _hidden(self) -> None:
        pass
'''


def count(s: str) -> int:
    return len(s) // 3 + 1


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def open_doc(path: Path, text: str, version: int = 1) -> Document:
    return Document(path.as_uri(), "python", version, text)


def snippets_at(cf: CrossFile, path: Path, source: str, open_docs: list[Document] | None = None) -> list[Snippet]:
    """Snippets for a cursor at the ``|`` in ``source`` (the file at ``path``)."""
    doc = open_doc(path, source.replace("|", "", 1))
    return cf.snippets(doc, source.index("|"), open_docs or [])


def texts(snippets: list[Snippet]) -> str:
    return "".join(s.text for s in snippets)


@pytest.fixture
def workspace(tmp_path: Path) -> tuple[CrossFile, Path]:
    root = tmp_path / "ws"
    write(root, {"depot/__init__.py": "from .rates import tariff_cents\n", "depot/rates.py": RATES,
                 "depot/units.py": "GRAMS_PER_POUND = 453.59237\n\ndef grams(pounds):\n    return pounds\n"})
    cf = CrossFile()
    cf.set_roots([root])
    return cf, root


# -- resolution ----------------------------------------------------------------------------------------
def test_absolute_from_import_shows_the_signature_and_docstring(workspace: tuple[CrossFile, Path]) -> None:
    cf, root = workspace
    source = "from depot.rates import tariff_cents\n\ndef f():\n    x = tariff_cents(|)\n"
    found = snippets_at(cf, root / "app.py", source)
    (near,) = [s for s in found if s.priority == crossfile.PRIORITY_NEAR]
    assert near.path == "depot/rates.py" and near.line == 5
    assert near.text == ('def tariff_cents(billable: int, zone: str, express: bool = False) -> int:\n'
                         '    """The tariff for ``billable`` grams into ``zone``."""\n')


def test_module_import_with_alias_resolves_the_attribute(workspace: tuple[CrossFile, Path]) -> None:
    cf, root = workspace
    found = snippets_at(cf, root / "app.py", "import depot.rates as r\n\nr.Ledger().book(|)\n")
    near = texts([s for s in found if s.priority == crossfile.PRIORITY_NEAR])
    assert "class Ledger:" in near and "    opening: int = 0\n" in near
    assert "    def book(self, cents: int, account: str) -> int: ...\n" in near
    assert "_hidden" not in near and "return 1" not in near  # private methods and bodies are left out
    module = texts([s for s in found if s.priority == crossfile.PRIORITY_MODULE])
    assert "ZONE_PERCENT" in module and "_private" not in module  # the module's public names, lower priority


def test_relative_imports_and_submodules(workspace: tuple[CrossFile, Path]) -> None:
    cf, root = workspace
    found = snippets_at(cf, root / "depot" / "orders.py", "from .rates import Ledger\nfrom . import units\n\n"
                        "units.GRAMS_PER_POUND + |\n")
    paths = {(s.path, s.text.split("\n")[0], s.priority) for s in found}
    assert ("depot/units.py", "GRAMS_PER_POUND = 453.59237", crossfile.PRIORITY_NEAR) in paths
    assert ("depot/rates.py", "class Ledger:", crossfile.PRIORITY_IMPORTED) in paths


def test_reexport_through_a_package_init_is_followed(workspace: tuple[CrossFile, Path]) -> None:
    cf, root = workspace
    found = snippets_at(cf, root / "app.py", "from depot import tariff_cents\n\ntariff_cents(|)\n")
    assert [s.path for s in found if s.priority == crossfile.PRIORITY_NEAR] == ["depot/rates.py"]


def test_a_module_that_does_not_exist_adds_nothing(workspace: tuple[CrossFile, Path]) -> None:
    cf, root = workspace
    source = ("import os\nfrom missing.mod import thing\nfrom .nowhere import x\nfrom depot.rates import nope\n\n"
              "thing(x, nope)|\n")
    assert snippets_at(cf, root / "app.py", source) == []


def test_open_document_wins_over_the_disk_and_may_be_unsaved(workspace: tuple[CrossFile, Path]) -> None:
    cf, root = workspace
    edited = open_doc(root / "depot" / "rates.py", "def tariff_cents(zone, grams):\n    ...\n")
    unsaved = open_doc(root / "depot" / "fresh.py", "FRESH = 1\n")
    found = snippets_at(cf, root / "app.py", "from depot.rates import tariff_cents\nfrom depot.fresh import FRESH\n"
                        "tariff_cents(FRESH|)\n", [edited, unsaved])
    shown = texts(found)
    assert "def tariff_cents(zone, grams):" in shown and "billable" not in shown and "FRESH = 1" in shown


def test_word_being_typed_does_not_count_as_used(workspace: tuple[CrossFile, Path]) -> None:
    cf, root = workspace
    found = snippets_at(cf, root / "app.py", "from depot.rates import tariff_cents\n\ntariff_cents|\n")
    assert {s.priority for s in found} == {crossfile.PRIORITY_IMPORTED}


# -- ordering, budget, layout ---------------------------------------------------------------------------
def header(cf: CrossFile, doc: Document, offset: int, budget: int = 400) -> str:
    chosen = select(cf.snippets(doc, offset), budget, count, marker("app.py"))
    return render(chosen, marker("app.py"))


def test_order_is_stable_while_typing_at_the_cursor(workspace: tuple[CrossFile, Path]) -> None:
    cf, root = workspace
    text = ("import depot.units as units\nfrom depot.rates import Ledger, tariff_cents\n\n\ndef f(book):\n"
            "    book.book(tariff_cents(1, 'K'), units.GRAMS_PER_POUND)\n    \n")
    doc = open_doc(root / "app.py", text)
    offset = len(text) - 1
    before = header(cf, doc, offset, budget=120)
    assert before.startswith("# Path: depot/rates.py\n") and before.endswith("# Path: app.py\n")
    for i, ch in enumerate("total = tariff_cents(3, 'M') + units.grams(2)"):
        line = doc.line_of(offset)
        col = offset - doc.line_starts[line]
        doc.apply_change((line, col, line, col), ch, i + 2)
        offset += 1
        now = header(cf, doc, offset, budget=120)
        if ch in "(+":  # a whole word was just typed: it may join the used names, never reorder
            before = now
        assert now == before, f"header changed after typing {ch!r} (#{i})"


def test_an_open_bracket_that_turns_the_file_into_an_error_keeps_the_snippets(
        workspace: tuple[CrossFile, Path]) -> None:
    cf, root = workspace
    functions = "".join(f"def f{i}(x):\n    if x:\n        return x\n    return tariff_cents(x, 'K')\n\n\n"
                        for i in range(6))
    closed = "from depot.rates import tariff_cents\n\n\n" + functions + "def g(p):\n    return tariff_cents(p, |)\n"
    typing = closed.replace("|)\n", "|\n") + functions
    doc = open_doc(root / "app.py", typing.replace("|", ""))
    tree = doc.tree
    assert tree is not None and tree.root_node.named_children[0].type == "ERROR"  # the case this test is about
    assert [s.text for s in snippets_at(cf, root / "app.py", typing)] == [
        s.text for s in snippets_at(cf, root / "app.py", closed)] != []


def test_budget_is_respected_and_priority_decides_what_fits() -> None:
    snippets = [Snippet("b.py", 10, "def far(): ...\n", 2), Snippet("a.py", 50, "def near(): ...\n", 0, 1),
                Snippet("a.py", 5, "X = 1\n", 1), Snippet("c.py", 0, "def huge():\n" + "    x\n" * 200, 0, 0)]
    current = marker("main.py")
    for budget in (0, 10, 20, 30, 40, 1000):
        chosen = select(snippets, budget, count, current)
        rendered = render(chosen, current)
        assert sum(count(line) for line in rendered.splitlines(keepends=True)) <= max(budget, 0) or not chosen
        assert chosen == sorted(chosen, key=lambda s: (s.path, s.line))
    chosen = select(snippets, 19, count, current)
    assert [s.text for s in chosen] == ["def near(): ...\n"]  # the nearest use first; "huge" never fits
    assert render(select(snippets, 30, count, current), current) == (
        "# Path: a.py\nX = 1\ndef near(): ...\n# Path: main.py\n")


def test_comment_style_comments_out_every_line() -> None:
    chosen = [Snippet("a.py", 0, "def f(x):\n    '''Doc.'''\n", 0)]
    assert render(chosen, marker("m.py"), "comment") == "# Path: a.py\n# def f(x):\n#     '''Doc.'''\n# Path: m.py\n"
    assert render([], marker("m.py")) == ""


# -- what is never read -----------------------------------------------------------------------------------
def test_files_outside_the_workspace_are_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, outside = tmp_path / "ws", tmp_path / "outside"
    write(outside, {"secret.py": "def leaked(): ...\n", "pkg/__init__.py": "", "pkg/mod.py": "def leaked(): ...\n"})
    write(root, {"pkg/__init__.py": ""})
    (root / "linked.py").symlink_to(outside / "secret.py")
    read: list[Path] = []
    original = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: read.append(self) or original(self))
    cf = CrossFile()
    cf.set_roots([root])
    source = "from ..outside.secret import leaked\nfrom linked import leaked as l2\nleaked(l2)|\n"
    assert snippets_at(cf, root / "pkg" / "user.py", source) == []
    assert not any(str(p).startswith(str(outside)) or p.name == "linked.py" for p in read), read
    # a document outside every workspace folder reads nothing from the disk either
    assert snippets_at(cf, outside / "pkg" / "user.py", "from .mod import leaked\nleaked(|)\n") == []


def test_no_workspace_folders_means_open_documents_only(tmp_path: Path) -> None:
    write(tmp_path, {"mod.py": "def on_disk(): ...\n"})
    other = open_doc(tmp_path / "mod2.py", "def opened(): ...\n")
    found = snippets_at(CrossFile(), tmp_path / "app.py", "import mod\nimport mod2\nmod.on_disk(mod2.opened(|))\n",
                        [other])
    assert {s.text for s in found} == {"def opened(): ...\n"}


def test_a_syntax_broken_file_does_not_crash(workspace: tuple[CrossFile, Path]) -> None:
    cf, root = workspace
    write(root, {"broken.py": "def ok(a, b):\n    '''Fine.'''\n\ndef bad(a, b:\n    return ((\nclass\nX = \n\x00\xff"})
    found = snippets_at(cf, root / "app.py", "from broken import ok, bad, X\n\nok(bad, X|)\n")
    assert "def ok(a, b):" in texts(found)
    broken = open_doc(root / "app.py", "from depot.rates import (\n\ndef f(:\n    tariff_cents(")
    cf.snippets(broken, len(broken.text))  # must not raise


def test_big_files_are_skipped_and_parses_per_request_are_bounded(workspace: tuple[CrossFile, Path]) -> None:
    cf, root = workspace
    write(root, {"big.py": "def big(): ...\n" + "#" * (crossfile.MAX_FILE_BYTES + 1) + "\n"})
    write(root, {f"m{i}.py": f"def f{i}(): ...\n" for i in range(crossfile.MAX_PARSES + 2)})
    names = list(range(crossfile.MAX_PARSES + 2))
    source = "from big import big\n" + "".join(f"from m{i} import f{i}\n" for i in names) + "big()|\n"
    first = snippets_at(cf, root / "app.py", source)
    assert "big" not in texts(first) and len(first) <= crossfile.MAX_PARSES
    second = snippets_at(cf, root / "app.py", source)  # the rest are read on the next requests
    assert len(second) == len(names)


def test_parsed_files_are_cached_until_they_change(workspace: tuple[CrossFile, Path],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    cf, root = workspace
    parses: list[Path] = []
    original = crossfile._parse_file
    monkeypatch.setattr(crossfile, "_parse_file", lambda p, n: parses.append(p) or original(p, n))
    source = "from depot.units import grams\n\ngrams(|)\n"
    for _ in range(5):
        assert "def grams(pounds):" in texts(snippets_at(cf, root / "app.py", source))
    assert parses == [root / "depot" / "units.py"]
    write(root, {"depot/units.py": "def grams(kilos, exact=True):\n    ...\n"})
    assert "def grams(kilos, exact=True):" in texts(snippets_at(cf, root / "app.py", source))


def test_workspace_folders_can_be_added_and_removed(tmp_path: Path) -> None:
    cf = CrossFile()
    cf.set_roots([tmp_path / "a", tmp_path / "b"])
    cf.change_roots(added=[tmp_path / "c"], removed=[tmp_path / "a"])
    assert cf.roots == (tmp_path / "b", tmp_path / "c")
    assert cf.inside_roots(tmp_path / "c" / "x.py") and not cf.inside_roots(tmp_path / "a" / "x.py")
    assert not cf.inside_roots(tmp_path / "bb" / "x.py")  # a sibling folder sharing the name's start


# -- recent edits ------------------------------------------------------------------------------------------
def test_recent_edits_of_other_open_documents_are_shown_lowest_priority(tmp_path: Path) -> None:
    cf = CrossFile()
    cf.set_roots([tmp_path])
    other = open_doc(tmp_path / "notes.py", "".join(f"line{i} = {i}\n" for i in range(40)))
    current = open_doc(tmp_path / "app.py", "x = 1\n")
    cf.record_edit(other.uri, 20)
    cf.record_edit(other.uri, 22)  # merges with the edit above
    cf.record_edit(current.uri, 0)  # the current file's own edits are in its local window already
    found = cf.snippets(current, 0, [other, current])
    assert [(s.path, s.line, s.priority) for s in found] == [("notes.py", 18, crossfile.PRIORITY_EDIT)]
    assert found[0].text.startswith("line18 = 18\n") and found[0].text.endswith("line26 = 26\n")


def test_recent_edits_ring_is_bounded() -> None:
    edits = crossfile.RecentEdits(size=3)
    for row in range(0, 100, 20):
        edits.record("file:///a.py", row)
    assert edits.newest_first() == [("file:///a.py", 80), ("file:///a.py", 60), ("file:///a.py", 40)]


# -- outlines -----------------------------------------------------------------------------------------------
def symbols_of(source: str):  # type: ignore[no-untyped-def]
    data = source.encode()
    parser = get_parser("python")
    assert parser is not None
    return module_symbols(parser.parse(data), data)


def test_outlines_keep_signatures_docstrings_and_decorators() -> None:
    source = ('@cache\ndef f(a,\n      b):  # trailing comment\n'
              '    """One.\n\n    Two.\n    Three.\n    Four.\n    """\n'
              '    return a\n\ndef g(): "inline doc"\n\nA = B = 3\nc, d = 1, 2\nE: int = (\n' + "  1,\n" * 12 + ")\n")
    defs = symbols_of(source).definitions
    assert defs["f"].text == '@cache\ndef f(a,\n      b):\n    """One.\n\n    Two.\n    """\n'
    assert defs["g"].text == "def g(): ...\n"
    assert defs["A"].text == defs["B"].text == "A = B = 3\n" and "c" in defs and "d" in defs
    assert defs["E"].text.endswith("    ...\n") and defs["E"].text.count("\n") == 9


def test_import_bindings() -> None:
    source = ("import a.b\nimport c.d as e\nfrom .f import g, h as i\nfrom .. import j\nfrom k import *\n"
              "try:\n    import l\nexcept ImportError:\n    import m\n\ndef local():\n    import hidden\n")
    data = source.encode()
    parser = get_parser("python")
    assert parser is not None
    bindings, stars = import_bindings(parser.parse(data), data)
    assert bindings["a"] == crossfile.Binding("a", 0, None)
    assert bindings["e"] == crossfile.Binding("c.d", 0, None)
    assert bindings["g"] == crossfile.Binding("f", 1, "g") and bindings["i"] == crossfile.Binding("f", 1, "h")
    assert bindings["j"] == crossfile.Binding("", 2, "j")
    assert "l" in bindings and "m" in bindings and "hidden" not in bindings
    assert stars == (crossfile.Binding("k", 0, None),)
