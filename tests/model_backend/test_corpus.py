"""The training pipeline's guards: no evaluation data, only permissive licences, exact infilling layouts.

Fast: no corpus is built and no model is trained.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from model_backend.embedded import WEIGHTS_DIR
from model_backend.embedded import corpus as C
from model_backend.embedded import train as T
from model_backend.tokenization import CodeLlamaTokenizer

# -- evaluation data is refused -------------------------------------------------------------------


def test_refuses_relative_shared_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(C.REPO_ROOT)
    with pytest.raises(C.ForbiddenSourceError):
        C.check_source_allowed(Path("../shared/data/some_file.jsonl"))
    with pytest.raises(C.ForbiddenSourceError):
        C.check_source_allowed("../shared/data")


def test_refuses_absolute_shared_data() -> None:
    with pytest.raises(C.ForbiddenSourceError):
        C.check_source_allowed(C.REPO_ROOT.parent / "shared" / "data" / "x.py")


@pytest.mark.parametrize(
    "name", ["human-eval", "human_eval_infilling.py", "HumanEval.jsonl", "HUMANEVAL", "mbpp", "MBPP_test.py"]
)
def test_refuses_eval_like_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(C.ForbiddenSourceError):
        C.check_source_allowed(tmp_path / "pkg" / name)


def test_accepts_ordinary_path(tmp_path: Path) -> None:
    C.check_source_allowed(tmp_path / "pkg" / "module.py")


def test_builder_raises_rather_than_skips(tmp_path: Path) -> None:
    bad = tmp_path / "human-eval"
    bad.mkdir()
    (bad / "problems.py").write_text("def f():\n    return 1\n" * 20)
    src = C.Source("x", "1", "MIT", "venv", [(bad / "problems.py", "x/problems.py")])
    with pytest.raises(C.ForbiddenSourceError):
        C.collect([src], cap_chars=10**9, workers=1)
    with pytest.raises(C.ForbiddenSourceError):
        C.package_sources([(bad, "x")], skip=set())
    with pytest.raises(C.ForbiddenSourceError):
        list(C.iter_corpus(bad / "corpus.jsonl.xz"))


def test_this_project_is_never_training_data(tmp_path: Path) -> None:
    """Installed in the venv, the project's own code would leak into the corpus and into the held-out
    repository-holes benchmark (built from this repository's code); the builder leaves it out."""
    site = tmp_path / "site"
    for name, module in (("codellama_lsp", "lsp_server"), ("somelib", "somelib")):
        info = site / f"{name}-0.1.0.dist-info"
        info.mkdir(parents=True)
        meta = f"Metadata-Version: 2.4\nName: {name.replace('_', '-')}\nVersion: 0.1.0\nLicense-Expression: MIT\n"
        (info / "METADATA").write_text(meta)
        (site / module).mkdir()
        (site / module / "core.py").write_text("def f():\n    return 1\n" * 20)
        (info / "RECORD").write_text(f"{module}/core.py,,\n{name}-0.1.0.dist-info/METADATA,,\n")
    sources, rejected = C.package_sources([(site, "venv")], skip=set())
    assert [s.name for s in sources] == ["somelib"] and sources[0].files
    assert [(r.name, "this project" in r.reason) for r in rejected] == [("codellama-lsp", True)]


# -- licences -------------------------------------------------------------------------------------

MIT_TEXT = "Copyright (c) 2020 Someone\n\nPermission is hereby granted, free of charge, to any person " * 3


@pytest.mark.parametrize(
    ("expression", "text", "classifiers"),
    [
        ("MIT", None, []),
        ("BSD-3-Clause", None, []),
        ("BSD-2-Clause", None, []),
        ("Apache-2.0", None, []),
        ("PSF-2.0", None, []),
        ("ISC", None, []),
        ("Apache-2.0 OR BSD-2-Clause", None, []),
        ("BSD-3-Clause AND 0BSD AND MIT AND Zlib AND CC0-1.0", None, []),  # numpy
        ("Apache-2.0 AND Apache-2.0 WITH LLVM-exception AND BSD-3-Clause AND BSL-1.0 AND MIT", None, []),  # torch
        (None, "MIT", []),
        (None, "Apache 2.0 License", []),
        (None, "3-Clause BSD License", []),
        (None, MIT_TEXT, []),
        (None, None, ["License :: OSI Approved :: MIT License"]),
        (None, None, ["License :: OSI Approved :: BSD License"]),
        (None, None, ["License :: OSI Approved :: Apache Software License"]),
        (None, None, ["License :: OSI Approved :: Python Software Foundation License"]),
        (None, None, ["License :: Public Domain"]),
        (None, "BSD", ["License :: OSI Approved", "License :: OSI Approved :: BSD License"]),
    ],
)
def test_permissive_accepted(expression: str | None, text: str | None, classifiers: list[str]) -> None:
    assert C.classify_licence(expression, text, classifiers).accepted


@pytest.mark.parametrize(
    ("expression", "text", "classifiers"),
    [
        ("GPL-3.0-only", None, []),
        ("GPL-2.0-or-later", None, []),
        ("LGPL-2.1-or-later", None, []),
        ("AGPL-3.0-only", None, []),
        ("MPL-2.0", None, []),
        ("MPL-2.0 AND MIT", None, []),
        ("Apache-2.0 AND CNRI-Python", None, []),
        ("Zlib", None, []),  # permissive but not on the allow-list, and never alone
        ("GPL-2.0-only WITH Classpath-exception-2.0", None, []),
        ("LicenseRef-Proprietary", None, []),
        (None, "GPL", []),
        (None, "GNU Lesser General Public License v3", []),
        (None, "Proprietary", []),
        (None, "UNKNOWN", []),
        (None, None, []),
        (None, "Copyright 2020 ACME Corp. All rights reserved.", []),
        (None, None, ["License :: OSI Approved :: GNU General Public License v3 (GPLv3)"]),
        (None, None, ["License :: OSI Approved :: GNU Lesser General Public License v2 or later (LGPLv2+)"]),
        (None, None, ["License :: OSI Approved :: GNU Affero General Public License v3"]),
        (None, None, ["License :: OSI Approved :: Mozilla Public License 2.0 (MPL 2.0)"]),
        (None, None, ["License :: Other/Proprietary License"]),
        (None, None, ["License :: OSI Approved"]),
        (None, None, ["License :: OSI Approved :: MIT License", "License :: OSI Approved :: GNU GPL v2"]),
        (None, "MIT", ["License :: OSI Approved :: Eclipse Public License 2.0 (EPL-2.0)"]),
    ],
)
def test_non_permissive_or_unknown_rejected(expression: str | None, text: str | None, classifiers: list[str]) -> None:
    assert not C.classify_licence(expression, text, classifiers).accepted


# -- file filters ---------------------------------------------------------------------------------


def test_filters(tmp_path: Path) -> None:
    code = tmp_path / "code.py"
    code.write_text("import os\n\n\ndef walk(root):\n    for name in os.listdir(root):\n        yield name\n" * 10)
    table = tmp_path / "table.py"
    table.write_text("TABLE = [\n" + "".join(f"    ({i}, {i * 3}, 0x{i:04x}, 'x{i}'),\n" for i in range(200)) + "]\n")
    latin1 = tmp_path / "latin1.py"
    latin1.write_bytes(("# caf\xe9\n" + "x = 1\n" * 100).encode("latin-1"))
    py2 = tmp_path / "py2.py"
    py2.write_text("print 'hello'\n" * 40)
    assert C.filter_file(code)[1] == "ok"
    assert C.filter_file(table) == (None, "mostly data")
    assert C.filter_file(latin1) == (None, "not UTF-8")
    assert C.filter_file(py2) == (None, "does not parse")


# -- training samples use the tokenizer's exact layouts ------------------------------------------


@pytest.fixture(scope="module")
def tok() -> CodeLlamaTokenizer:
    path = WEIGHTS_DIR / "tokenizer.model"
    if not path.is_file():
        pytest.skip("no embedded tokenizer.model")
    return CodeLlamaTokenizer(path)


class FixedRandom(random.Random):
    """Plays back ``random()`` values; everything else as usual."""

    def __init__(self, values: list[float]) -> None:
        super().__init__(0)
        self.values = values

    def random(self) -> float:
        return self.values.pop(0) if self.values else 0.5

    def getrandbits(self, k: int) -> int:  # defined so that randint() keeps using the Mersenne Twister
        return super().getrandbits(k)


def test_layouts(tok: CodeLlamaTokenizer) -> None:
    fim = tok.require_fim()
    text = "def f(x):\n    return x + 1\n"
    plain, _ = T.make_sample(tok, text, FixedRandom([0.95]), 0.9, 0.5, 0.5)
    assert plain == [tok.bos_id, *tok.encode(text), tok.eos_id]
    # FIM, random split (0.9 >= cursor share 0.5), then SPM (0.1 < 0.5)
    rng = FixedRandom([0.0, 0.9, 0.1])
    state = rng.getstate()
    spm, _ = T.make_sample(tok, text, rng, 0.9, 0.5, 0.5)
    rng2 = random.Random()
    rng2.setstate(state)
    prefix, middle, suffix = T.random_split(text, rng2)
    assert spm == [tok.bos_id, fim.prefix, fim.suffix, *tok.encode_nospace(suffix), fim.middle,
                   *tok.encode(prefix + middle), fim.eot]
    rng = FixedRandom([0.0, 0.9, 0.9])
    state = rng.getstate()
    psm, _ = T.make_sample(tok, text, rng, 0.9, 0.5, 0.5)
    rng2.setstate(state)
    prefix, middle, suffix = T.random_split(text, rng2)
    assert psm == [*tok.psm_ids(prefix, suffix), *tok.encode_nospace(middle), fim.eot]


def test_cursor_split_is_product_shaped() -> None:
    text = "class A:\n    def f(self):\n        x = compute(1, 2)\n        return x\n\n\nprint(A().f())\n"
    rng = random.Random(7)
    for _ in range(300):
        prefix, middle, suffix = T.cursor_split(text, rng)
        assert prefix + middle + suffix == text
        assert not middle.endswith("\n")
        assert suffix == "" or suffix.startswith("\n")  # the middle runs to an end of line
        before = prefix.rsplit("\n", 1)[-1]
        line = before + middle.split("\n", 1)[0]
        assert len(before) >= len(line) - len(line.lstrip())  # the cursor is never inside the indentation


def test_windows_and_packing() -> None:
    text = "".join(f"line {i} " + "x" * (i % 50) + "\n" for i in range(500))
    pieces = T.windows(text, 600)
    assert "".join(pieces) == text and all(len(p) <= 600 for p in pieces)
    samples = iter([([1] * n, 0) for n in [300, 900, 50, 1500, 200, 700] * 100])
    rows = T.pack(samples, 1024, pad_id=2, pool_size=8)
    for _ in range(20):
        ids, labels = next(rows)
        assert len(ids) == len(labels) == 1025
        assert all(label == -100 for i, label in zip(ids, labels, strict=True) if i == 2)
