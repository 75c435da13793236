"""The settings users read (VS Code and its README, serverKeys.ts, Neovim help, README) agree with settings.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lsp_server.settings import Settings, parse_settings

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ["editors/vscode/package.json", "editors/vscode/src/serverKeys.ts", "editors/vscode/README.md",
             "editors/nvim/doc/codellama.txt", "README.md"]


def gen(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_settings.py"), *args],
                          capture_output=True, text=True, timeout=60, check=False)


def test_the_checked_in_files_match_the_settings_dataclass() -> None:
    result = gen("--check")
    assert result.returncode == 0, result.stderr


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    for relative in GENERATED:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / relative, tmp_path / relative)
    return tmp_path


@pytest.mark.parametrize(("relative", "old", "new"), [
    ("editors/vscode/package.json", '"maximum": 1024', '"maximum": 2048'),
    ("editors/vscode/src/serverKeys.ts", "'fimMode', ", ""),
    ("editors/nvim/doc/codellama.txt", "Longest suggestion, in tokens.", "Longest suggestion."),
    ("README.md", "| `maxNewTokens` | `64` |", "| `maxNewTokens` | `32` |"),
    ("editors/vscode/README.md", "| `codellama.maxNewTokens` | `64` |", "| `codellama.maxNewTokens` | `32` |"),
])
def test_a_hand_edit_is_named_by_the_check_and_undone_by_the_generator(
        copy: Path, relative: str, old: str, new: str) -> None:
    path = copy / relative
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    result = gen("--check", "--root", str(copy))
    assert result.returncode == 1
    named = {line.split(" differs ")[0] for line in result.stderr.splitlines() if " differs " in line}
    assert named == {relative}
    assert gen("--root", str(copy)).returncode == 0
    assert path.read_text(encoding="utf-8") == text


def test_what_vscode_sends_by_default_is_the_servers_defaults() -> None:
    """The extension sends every server setting it shows, with "" for null: none may be refused or differ."""
    package = json.loads((ROOT / "editors/vscode/package.json").read_text(encoding="utf-8"))
    properties = package["contributes"]["configuration"]["properties"]
    sent = {key.removeprefix("codellama."): entry["default"] for key, entry in properties.items()
            if key not in ("codellama.pythonPath", "codellama.languages", "codellama.trigger",
                           "codellama.trace.server")}
    settings, problems = parse_settings(sent)
    assert problems == [] and settings.extra == {}
    assert settings == Settings()
    assert {"maxNewTokens", "model", "fimMode", "enabled"} <= set(sent)
