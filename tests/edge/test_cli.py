"""The ``complete`` command runs the server's pipeline on a file (real process, real embedded model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "lsp_server", "complete", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)


def test_complete_prints_a_suggestion_and_the_exact_prompt(tmp_path: Path) -> None:
    src = tmp_path / "area.py"
    src.write_text("import math\n\n\ndef circle_area(radius):\n    return math.")
    done = run(f"{src}:5:17", "--show-prompt")
    assert done.returncode == 0, done.stderr
    assert "--- prompt (spm" in done.stdout and "<s>▁<PRE>▁<SUF>" in done.stdout
    suggestion = done.stdout.split("--- suggestion ---\n", 1)[1].strip()
    assert suggestion and "<" not in suggestion


def test_complete_json_and_psm_mode(tmp_path: Path) -> None:
    src = tmp_path / "x.py"
    src.write_text("def add(a, b):\n    return a + b\n")
    done = run(f"{src}:2:12", "--json", "--fim-mode", "psm")
    data = json.loads(done.stdout)
    assert data["mode"] == "psm"
    assert data["prompt"] == "<s>▁<PRE> def add(a, b):\n    return ▁<SUF>a + b\n▁<MID>"


def test_complete_reports_a_bad_location_clearly(tmp_path: Path) -> None:
    src = tmp_path / "x.py"
    src.write_text("x = 1\n")
    done = run(f"{src}:9:1")
    assert done.returncode == 2 and "line 9 is past the end of the file (2 lines)" in done.stderr
    done = run(f"{src}:1:40")
    assert done.returncode == 2 and "past the end" in done.stderr


def test_complete_rejects_settings_that_are_not_a_json_object(tmp_path: Path) -> None:
    src = tmp_path / "x.py"
    src.write_text("x = 1\n")
    for bad in ("not json", "[1, 2]"):
        done = run(f"{src}:1:1", "--settings", bad)
        assert done.returncode == 2, done.stderr
        assert "--settings must be a JSON object" in done.stderr and "Traceback" not in done.stderr
