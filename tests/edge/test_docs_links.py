"""The documents link only to files in the repository, and their anchors to headings that exist.

A reader of a clone (or of the packaged sdist) has no ``shared/`` folder, so a link there is a dead end.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = ["README.md", "benchmarks/README.md", "docs/prompt-format.md"]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {anchor(line.lstrip("#")) for line in path.read_text(encoding="utf-8").splitlines()
            if line.startswith("#")}


@pytest.mark.parametrize("document", DOCUMENTS)
def test_links_point_to_files_and_headings_in_the_repository(document: str) -> None:
    path = ROOT / document
    text = path.read_text(encoding="utf-8")
    assert "shared/docs" not in text
    for target in LINK.findall(text):
        assert "://" not in target, f"{document}: {target} leaves the repository"
        file, _, fragment = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        assert linked.is_file() and ROOT in linked.parents, f"{document}: {target} is not a file here"
        if fragment:
            assert fragment in anchors(linked), f"{document}: no heading for #{fragment} in {file or document}"


def test_anchor_follows_githubs_rule() -> None:
    assert anchor(" GPU: Code Llama 7B's shape in 4-bit NF4") == "gpu-code-llama-7bs-shape-in-4-bit-nf4"
