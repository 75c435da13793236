"""Command line: serve LSP over stdio or TCP, or run one completion on a file (same pipeline as the server).

    codellama-lsp                                  # LSP over stdio (what editors start)
    codellama-lsp --tcp 127.0.0.1:2087             # LSP over TCP
    codellama-lsp complete FILE:LINE:COL [--show-prompt] [--model DIR] [--fim-mode spm] [--workspace DIR]

LINE and COL are 1-based; COL counts characters (code points), as most editors display it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the network, whatever the caller's environment


def main(argv: list[str] | None = None) -> None:
    """Dispatch to ``complete`` or to the LSP server."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "complete":
        sys.exit(complete_main(args[1:]))
    serve_main(args)


def _logging(level: str, log_file: str | None) -> None:
    """Logs go to stderr or a file, never stdout (stdout carries the protocol)."""
    handler: logging.Handler = logging.FileHandler(log_file) if log_file else logging.StreamHandler(sys.stderr)
    logging.basicConfig(level=level.upper(), handlers=[handler],
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pygls").setLevel(logging.WARNING)  # it logs every message body at INFO


def serve_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="codellama-lsp", description="Code Llama inline-completion language server")
    parser.add_argument("--tcp", metavar="HOST:PORT", help="listen on TCP instead of stdio")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--log-file")
    args = parser.parse_args(argv)
    _logging(args.log_level, args.log_file)
    from lsp_server.handlers import SERVER

    if args.tcp:
        host, _, port = args.tcp.rpartition(":")
        if not host or not port.isdigit():
            parser.error("--tcp expects HOST:PORT, e.g. 127.0.0.1:2087")
        _leave(SERVER.serve_tcp(host, int(port)))
    _leave(SERVER.serve_stdio())  # 0 after shutdown then exit, 1 for exit (or end of input) without shutdown


def _leave(code: int) -> None:
    """Exit now with ``code``: a model load or decode still running on the worker thread must not keep the
    process alive after ``exit`` (the interpreter would join it first)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def complete_main(argv: list[str]) -> int:
    """Print the suggestion for FILE:LINE:COL (and the exact prompt with --show-prompt)."""
    parser = argparse.ArgumentParser(prog="codellama-lsp complete", description=complete_main.__doc__)
    parser.add_argument("location", metavar="FILE:LINE:COL")
    parser.add_argument("--show-prompt", action="store_true", help="print the exact prompt sent to the model")
    parser.add_argument("--settings", default="{}", help="JSON object of settings (same keys as the server's)")
    parser.add_argument("--model", help="checkpoint folder or cached hub id (default: the embedded model)")
    parser.add_argument("--fim-mode", choices=["auto", "psm", "spm"])
    parser.add_argument("--max-new-tokens", type=int)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--workspace", type=Path, default=Path.cwd(),
                        help="workspace folder for cross-file context (default: the current folder)")
    args = parser.parse_args(argv)
    _logging("warning", None)

    from lsp_server.completion.core import CompletionCore, NotReadyError
    from lsp_server.completion.documents import Document, PositionError
    from lsp_server.completion.languages import language_for_path
    from lsp_server.settings import parse_settings
    from model_backend.generation import EngineError
    from model_backend.loading import ModelLoadError

    try:
        raw = json.loads(args.settings)
    except json.JSONDecodeError as exc:
        parser.error(f"--settings must be a JSON object, e.g. '{{\"fimMode\": \"psm\"}}': {exc}")
    if not isinstance(raw, dict):
        parser.error(f"--settings must be a JSON object, e.g. '{{\"fimMode\": \"psm\"}}', got {args.settings!r:.100}")
    raw.update({k: v for k, v in {"model": args.model, "fimMode": args.fim_mode,
                                  "maxNewTokens": args.max_new_tokens}.items() if v is not None})
    settings, problems = parse_settings(raw)
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    path, line, col = _parse_location(args.location, parser)
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        parser.error(f"cannot read {path}: {exc}")
    doc = Document(path.resolve().as_uri(), language_for_path(str(path)) or "plaintext", 0, text)
    try:
        offset = _offset(doc, line, col)
        core = CompletionCore(settings)
        core.crossfile.set_roots([args.workspace])
        core.load()
        t0 = time.perf_counter()
        outcome = core.generate(core.prepare(doc, offset))
        elapsed = (time.perf_counter() - t0) * 1e3
    except (PositionError, ModelLoadError, NotReadyError, EngineError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"suggestion": outcome.text, "raw": outcome.raw, "prompt": core.last_prompt.get("text"),
                          "mode": core.last_prompt.get("mode"), "ms": round(elapsed, 1), **outcome.timings}))
        return 0
    if args.show_prompt:
        print(f"--- prompt ({core.last_prompt['mode']}, {len(outcome.result.ids)} tokens generated) ---")
        print(core.last_prompt["text"])
        print("--- suggestion ---")
    print(outcome.text if outcome.text is not None else "", end="" if outcome.text else "\n")
    if outcome.text:
        print()
    print(f"({elapsed:.0f} ms, stop: {outcome.result.stop})", file=sys.stderr)
    return 0


def _parse_location(location: str, parser: argparse.ArgumentParser) -> tuple[Path, int, int]:
    try:
        file, line, col = location.rsplit(":", 2)
        return Path(file), int(line), int(col)
    except ValueError:
        parser.error(f"expected FILE:LINE:COL (1-based), got {location!r}")


def _offset(doc: object, line: int, col: int) -> int:
    """Offset of 1-based LINE and character COL (code points, not UTF-16 units)."""
    from lsp_server.completion.documents import Document, PositionError

    assert isinstance(doc, Document)
    if line < 1 or col < 1:
        raise PositionError(f"line and column are 1-based, got {line}:{col}")
    if line > doc.line_count:
        raise PositionError(f"line {line} is past the end of the file ({doc.line_count} lines)")
    start = doc.offset_at(line - 1, 0)
    line_text = doc.text[start:].split("\n", 1)[0]
    if col - 1 > len(line_text.rstrip("\r")):
        raise PositionError(f"column {col} is past the end of line {line} ({len(line_text.rstrip(chr(13)))} chars)")
    return start + col - 1
