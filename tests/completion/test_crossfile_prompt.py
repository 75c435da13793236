"""Cross-file context in the prompt (embedded model's tokenizer): placement, budget, and no change when empty."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from lsp_server.completion.core import CompletionCore
from lsp_server.completion.documents import Document
from lsp_server.settings import Settings

UNITS = 'def grams_from_pounds(pounds: float) -> int:\n    """Whole grams."""\n    return int(pounds * 453.6)\n'
PADDING = "".join(f"    step{i} = p * {i}  # padding so the local prefix is long\n" for i in range(200))
APP = "from depot.units import grams_from_pounds\n\n\ndef weigh(p):\n" + PADDING + "    return grams_from_pounds("


@pytest.fixture(scope="module")
def core() -> CompletionCore:
    core = CompletionCore(Settings(cross_file_context=True, prefix_tokens=600, cross_file_tokens=128))
    core.load()
    return core


@pytest.fixture
def workspace(tmp_path: Path, core: CompletionCore) -> Path:
    (tmp_path / "depot").mkdir()
    (tmp_path / "depot" / "__init__.py").write_text("")
    (tmp_path / "depot" / "units.py").write_text(UNITS)
    core.crossfile.set_roots([tmp_path])
    return tmp_path


def prompt_text(core: CompletionCore, doc: Document, **changes: object) -> tuple[str, int]:
    """(the prompt's prefix part as text, its token count) with the given settings changes."""
    saved = core.settings
    core.apply_settings(dataclasses.replace(saved, **changes))  # type: ignore[arg-type]
    try:
        prep = core.prepare(doc, len(doc.text))
    finally:
        core.apply_settings(saved)
    assert core.loaded is not None
    tok = core.loaded.tokenizer
    middle = prep.prompt.ids.index(tok.require_fim().middle)
    ids = prep.prompt.ids[middle + 1:]
    return tok.decode_middle(ids) + prep.prompt.healed, len(ids)


def test_definitions_sit_before_the_local_prefix_within_the_prefix_budget(core: CompletionCore,
                                                                          workspace: Path) -> None:
    doc = Document((workspace / "app.py").as_uri(), "python", 1, APP)
    on, on_tokens = prompt_text(core, doc)
    off, off_tokens = prompt_text(core, doc, cross_file_context=False)
    header = '# Path: depot/units.py\ndef grams_from_pounds(pounds: float) -> int:\n    """Whole grams."""\n'
    assert on.lstrip().startswith(header + "# Path: app.py\n")
    assert "return int(pounds" not in on  # bodies are never shown
    assert off.endswith(on.split("# Path: app.py\n", 1)[1])  # the local prefix is a suffix of the usual one
    assert on_tokens <= 600 + 2 and off_tokens <= 600 + 2  # the total stays within prefixTokens (+ healing slack)


def test_without_anything_to_show_the_prompt_is_unchanged(core: CompletionCore, workspace: Path) -> None:
    doc = Document((workspace / "solo.py").as_uri(), "python", 1, "import os\n\n\ndef f(x):\n    return os.path.join(")
    assert prompt_text(core, doc) == prompt_text(core, doc, cross_file_context=False)
    plain = Document((workspace / "notes.txt").as_uri(), "plaintext", 1, "from depot.units import grams_from_pounds\n")
    assert prompt_text(core, plain) == prompt_text(core, plain, cross_file_context=False)


def test_last_prompt_lists_the_snippets(core: CompletionCore, workspace: Path) -> None:
    doc = Document((workspace / "app.py").as_uri(), "python", 1, APP)
    core.generate(core.prepare(doc, len(doc.text)))
    assert core.last_prompt["crossfile"] == ["depot/units.py:1"]
    assert "# Path: depot/units.py" in str(core.last_prompt["text"])
