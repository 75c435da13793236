"""Write the settings that users read from the one source, ``lsp_server.settings.Settings``.

Five places show the server's settings to a user: the VS Code extension's ``package.json`` (its settings UI),
``editors/vscode/src/serverKeys.ts`` (which of them the extension sends) and its README, the Neovim help and the
README table.
Written by hand they drifted, so they are generated: ``python scripts/gen_settings.py`` rewrites them, and
``--check`` only compares, exits 1 and names each file that differs (tests/edge/test_settings_sources.py runs it).
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lsp_server.settings import About, Settings, about, camel, setting_names  # noqa: E402

PACKAGE_JSON = "editors/vscode/package.json"
SERVER_KEYS_TS = "editors/vscode/src/serverKeys.ts"
NVIM_HELP = "editors/nvim/doc/codellama.txt"
README = "README.md"
VSCODE_README = "editors/vscode/README.md"

# VS Code settings that belong to the extension alone (the server never reads them); kept as written.
VSCODE_CLIENT_KEYS = ("pythonPath", "languages", "trigger", "trace.server")
README_BEGIN, README_END = "<!-- settings:begin -->", "<!-- settings:end -->"
HELP_BEGIN = "  (generated from lsp_server/settings.py by scripts/gen_settings.py; do not edit)"
HELP_END = "  (end of the generated settings)"
GENERATED = "// Generated from lsp_server/settings.py by scripts/gen_settings.py: do not edit, run that script."


def _settings() -> list[tuple[str, About, Any]]:
    """(snake_case name, About, default) of every setting, in the dataclass's order."""
    defaults = Settings()
    found = []
    for name in setting_names():
        info = about(name)
        assert info is not None
        found.append((name, info, getattr(defaults, name)))
    return found


def _doc(info: About, choices: bool = False) -> str:
    """The description; with ``choices``, followed by what each choice means (VS Code shows those apart)."""
    parts = [info.doc]
    if choices and info.choice_docs:  # one line per choice, or none at all
        parts += [f"`{choice}`: {doc}" for choice, doc in zip(info.choices, info.choice_docs, strict=True)]
    if info.reload:
        parts.append("Changing it reloads the model.")
    return " ".join(parts)


def _in_vscode(info: About) -> bool:
    """Whether the generated part of the extension carries this setting (its UI entry, and sending it)."""
    return info.editor and not info.client


def vscode_entry(info: About, default: Any) -> dict[str, Any]:
    """The ``contributes.configuration`` property of one server setting."""
    entry: dict[str, Any] = {}
    if isinstance(default, bool):
        entry["type"] = "boolean"
    elif isinstance(default, int):
        entry["type"] = "integer"
    else:
        entry["type"] = "string"
    if info.choices:
        entry["enum"] = list(info.choices)
        if info.choice_docs:
            entry["enumDescriptions"] = list(info.choice_docs)
    if info.bounds is not None:
        entry["minimum"], entry["maximum"] = info.bounds
    entry["default"] = "" if default is None else default  # VS Code has no null text setting: "" stands for it
    if info.scope:
        entry["scope"] = info.scope
    entry["markdownDescription"] = _doc(info)
    return entry


def package_json(text: str) -> str:
    """``package.json`` with its server settings regenerated and the extension's own ones left in place."""
    package = json.loads(text)
    properties: dict[str, Any] = package["contributes"]["configuration"]["properties"]
    keep = {f"codellama.{key}" for key in VSCODE_CLIENT_KEYS}
    keep |= {f"codellama.{camel(name)}" for name, info, _ in _settings() if info.client}
    generated = {f"codellama.{camel(name)}": vscode_entry(info, default)
                 for name, info, default in _settings() if _in_vscode(info)}
    result: dict[str, Any] = {}
    for key, value in properties.items():
        if key in keep:
            if key == "codellama.trace.server" and generated:  # the generated block goes before trace at the latest
                result.update(generated)
                generated = {}
            result[key] = value
        elif generated:  # where the first server setting was
            result.update(generated)
            generated = {}
    result.update(generated)
    package["contributes"]["configuration"]["properties"] = result
    return json.dumps(package, indent=2, ensure_ascii=False) + "\n"


def _ts_list(name: str, doc: str, keys: list[str]) -> str:
    items = textwrap.fill(", ".join(f"'{key}'" for key in keys) + ",", width=116, break_long_words=False,
                          break_on_hyphens=False, initial_indent="    ", subsequent_indent="    ")
    return f"/** {doc} */\nexport const {name} = [\n{items}\n] as const;\n"


def server_keys_ts(_: str) -> str:
    """``serverKeys.ts``: what the extension sends to the server, and which of those "" stands for null in."""
    sent = [(camel(name), info) for name, info, _ in _settings() if _in_vscode(info)]
    return "\n".join([
        GENERATED,
        _ts_list("SERVER_KEYS", "Settings the server reads, sent under the same camelCase names as in its README.",
                 [key for key, _ in sent]),
        _ts_list("NULLABLE_KEYS", 'Text settings whose empty value ("") is sent as null.',
                 [key for key, info in sent if info.null]),
    ])


def _lua(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"'{value}'" if isinstance(value, str) else str(value)


def _json(value: Any) -> str:
    return json.dumps(value)


def _values(info: About, default: Any, literal: Callable[[Any], str], null: str) -> str:
    """What a setting accepts, in words."""
    if info.choices:
        return ", ".join(f"`{literal(choice)}`" for choice in info.choices)
    if isinstance(default, bool):
        return f"`{literal(True)}`, `{literal(False)}`"
    if info.bounds is not None:
        return f"{info.bounds[0]} to {info.bounds[1]}"
    if info.accepts:
        return info.accepts + (f", or `{null}`" if info.null else "")
    if info.null:
        return f"path or model id, or `{null}`"
    return "text"


def help_section() -> list[str]:
    """The Neovim help's settings list: name, default, accepted values, then the description, in 78 columns."""
    lines = [HELP_BEGIN]
    for name, info, default in _settings():
        head = f"  `{camel(name)}` = `{_lua(default)}`  ({_values(info, default, _lua, 'vim.NIL')})"
        lines += textwrap.wrap(head, 78, subsequent_indent="      ", break_on_hyphens=False)
        lines += textwrap.wrap(_doc(info, choices=True), 78, initial_indent="      ", subsequent_indent="      ",
                               break_on_hyphens=False)
    lines.append(HELP_END)
    return lines


def readme_section() -> list[str]:
    """The README's settings table."""
    lines = [README_BEGIN, "| setting | default | values | meaning |", "|---|---|---|---|"]
    for name, info, default in _settings():
        values = _values(info, default, _json, "null")
        row = [f"`{camel(name)}`", f"`{_json(default)}`", values, _doc(info, choices=True)]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    lines.append(README_END)
    return lines


def vscode_readme_section() -> list[str]:
    """The extension README's table of the server settings it offers (those in package.json)."""
    lines = [README_BEGIN, "| Setting | Default | What it does |", "|---|---|---|"]
    for name, info, default in _settings():
        if _in_vscode(info):
            shown = '""' if default is None else _json(default)
            row = [f"`codellama.{camel(name)}`", f"`{shown}`", _doc(info, choices=True)]
            lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    lines.append(README_END)
    return lines


def _between(text: str, begin: str, end: str, section: list[str], where: str) -> str:
    """``text`` with the lines from ``begin`` to ``end`` (both included) replaced by ``section``."""
    lines = text.split("\n")
    if lines.count(begin) != 1 or lines.count(end) != 1 or lines.index(begin) > lines.index(end):
        raise SystemExit(f"{where}: expected one line {begin!r} and, after it, one line {end!r}")
    start, stop = lines.index(begin), lines.index(end)
    return "\n".join(lines[:start] + section + lines[stop + 1:])


TARGETS: dict[str, Callable[[str], str]] = {
    PACKAGE_JSON: package_json,
    SERVER_KEYS_TS: server_keys_ts,
    NVIM_HELP: lambda text: _between(text, HELP_BEGIN, HELP_END, help_section(), NVIM_HELP),
    README: lambda text: _between(text, README_BEGIN, README_END, readme_section(), README),
    VSCODE_README: lambda text: _between(text, README_BEGIN, README_END, vscode_readme_section(), VSCODE_README),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 naming each file that differs")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to write (default: this one)")
    args = parser.parse_args(argv)
    stale = []
    for relative, generate in TARGETS.items():
        path = args.root / relative
        old = path.read_text(encoding="utf-8") if path.exists() else ""
        new = generate(old)
        if new == old:
            continue
        stale.append(relative)
        if not args.check:
            path.write_text(new, encoding="utf-8")
    if args.check and stale:
        for relative in stale:
            print(f"{relative} differs from lsp_server/settings.py", file=sys.stderr)
        print("run: python scripts/gen_settings.py", file=sys.stderr)
        return 1
    for relative in [] if args.check else stale:
        print(f"wrote {relative}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
