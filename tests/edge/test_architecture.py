"""The package structure holds: no import cycles, and the completion core and the model stay plain Python.

Why a test: the layout (stages in ``lsp_server/completion``, code actions in ``lsp_server/actions``, the model in
``model_backend``, the protocol edge in ``lsp_server/handlers.py`` and ``server.py``) only stays that way if a
change that breaks it fails.  The import graph is read from the source with ``ast`` (nothing is imported), every
import statement counted: module level, under ``if TYPE_CHECKING:`` and inside functions alike.
"""

from __future__ import annotations

import ast
import os
import re
import sys
from pathlib import Path

from model_backend.embedded import train

ROOT = Path(__file__).parents[2]
PACKAGES = ("lsp_server", "model_backend")
PROTOCOL_EDGE = ("lsp_server.handlers", "lsp_server.server")
LSP_LIBRARIES = ("pygls", "lsprotocol")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def our_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every module ``name`` imports (ours or not), as dotted names; ``from pkg import mod`` gives ``pkg.mod``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1 packages
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else base)
    return found


def import_graph() -> dict[str, set[str]]:
    """Our modules and, for each, the modules of ours it imports."""
    modules = our_modules()
    return {name: {m for m in imported(name, path, modules) if m in modules and m != name}
            for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path ``[a, b, ..., a]``, or ``None`` (depth-first search, three colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def test_the_graph_is_read_from_every_kind_of_import() -> None:
    """The reader itself: a function-level import and a TYPE_CHECKING one are edges (else the test sees too little)."""
    graph = import_graph()
    assert "lsp_server.completion.core" in graph["lsp_server.cli"]  # imported inside complete_main
    assert "lsp_server.completion.syntax" in graph["lsp_server.completion.parsing"]
    assert len(graph) > 30 and sum(len(v) for v in graph.values()) > 60


def test_find_cycle_reports_the_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_cycles_among_our_modules() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_completion_core_and_the_model_never_import_the_protocol_edge() -> None:
    """``lsp_server/completion`` and ``model_backend`` are plain Python: the CLI and the benchmarks run them
    without a server, and no LSP type leaks into them."""
    modules = our_modules()
    offenders = []
    for name, path in modules.items():
        if name.startswith(("lsp_server.completion", "model_backend")):
            bad = {m for m in imported(name, path, modules)
                   if m.startswith(PROTOCOL_EDGE) or m.split(".")[0] in LSP_LIBRARIES}
            offenders += [f"{name} imports {m}" for m in sorted(bad)]
    assert not offenders, offenders


MACHINE_PATH = re.compile(r"(?<![:/\w])/(?:work|root|home|opt)/")


def test_no_development_machine_paths_in_what_we_ship() -> None:
    """Code, docs and records we commit name paths relative to the repository (or ``<venv>``), never this machine's."""
    skipped = {".venv", "build", "node_modules", ".test-deps", "tests", ".git", "data"}  # tests: fake file:/// URIs
    files = []
    for folder, dirs, names in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in skipped]
        files += [Path(folder) / name for name in names if name.endswith((".py", ".md"))]
    files.append(ROOT / "model_backend" / "embedded" / "weights" / "training.json")
    found = [f"{p.relative_to(ROOT)}:{i}" for p in files
             for i, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
             if MACHINE_PATH.search(line)]
    assert not found, found


def test_training_records_portable_paths() -> None:
    """``training.json`` ships in the package: the paths it records are the checkout's and the venv's, made relative."""
    repo = str(ROOT)
    assert train.portable(f"{repo}/model_backend/embedded/weights/tokenizer.model") == (
        "model_backend/embedded/weights/tokenizer.model")
    assert train.portable(f"{sys.prefix}/bin/python -m x --out {repo}/w") == "<venv>/bin/python -m x --out w"
