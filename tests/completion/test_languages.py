"""The language registry: one place for per-language facts, and the editors' lists agree with it."""

from __future__ import annotations

import re
from pathlib import Path

from lsp_server.actions import instruct
from lsp_server.completion import languages, syntax
from lsp_server.completion.text import leading_ws, width

ROOT = Path(__file__).parents[2]


def test_neovim_default_filetypes_are_the_registry_languages() -> None:
    lua = (ROOT / "editors" / "nvim" / "lua" / "codellama" / "config.lua").read_text()
    found = re.search(r"^\s*filetypes\s*=\s*\{([^}]*)\}", lua, re.MULTILINE)
    assert found, "no `filetypes = { ... }` default in config.lua"
    filetypes = re.findall(r"'([^']+)'|\"([^\"]+)\"", found.group(1))
    names = [a or b for a, b in filetypes]
    assert len(names) == len(set(names))
    assert set(names) == set(languages.LANGUAGES)


def test_every_language_has_a_grammar_extensions_and_prompt_facts() -> None:
    for lang, facts in languages.LANGUAGES.items():
        assert facts.id == lang
        assert syntax.get_parser(lang) is not None, lang
        assert facts.extensions and all(languages.language_for_path(f"x{e.upper()}") == lang for e in facts.extensions)
        assert instruct.LANGUAGE_NAMES[lang] == facts.name
    assert instruct.fence_language("typescriptreact") == "tsx" and instruct.fence_language("go") == "go"
    assert instruct.fence_language("markdown") == "markdown" and instruct.fence_language(None) == ""
    assert languages.language_for_path("notes.txt") is None and languages.facts("plaintext") is None


def test_continuation_keywords_cover_every_language() -> None:
    assert set(languages.CONTINUATION_KEYWORDS) == {"else", "elif", "except", "finally", "catch", "case", "default"}


def test_indentation_helpers() -> None:
    assert leading_ws("\t  x = 1  ") == "\t  " and leading_ws("x") == "" and leading_ws("   ") == "   "
    assert width("\t  ") == 6 and width("    ") == 4 and width("") == 0
