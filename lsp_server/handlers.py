"""LSP handlers: thin functions over ``CodeLlamaServer`` and the plain-Python core.

Each handler converts protocol types to plain values, calls one core function, and converts back.
Document-sync notifications never raise.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp

from lsp_server import commands
from lsp_server.actions import offers
from lsp_server.completion.crossfile import uri_to_path
from lsp_server.server import LAST_PROMPT, STATS, CodeLlamaServer

log = logging.getLogger(__name__)

SERVER = CodeLlamaServer()


@SERVER.feature(lsp.INITIALIZE)
def initialize(ls: CodeLlamaServer, params: lsp.InitializeParams) -> None:
    """Read settings from ``initializationOptions`` and the workspace folders (for cross-file context)."""
    ls.update_settings(params.initialization_options or {})
    ls.core.crossfile.set_roots(workspace_roots(params))


def workspace_roots(params: lsp.InitializeParams) -> list[Path]:
    """The workspace folders as paths: ``workspaceFolders``, else ``rootUri``, else ``rootPath``."""
    uris = [f.uri for f in params.workspace_folders or []] or ([params.root_uri] if params.root_uri else [])
    paths = [p for p in map(uri_to_path, uris) if p is not None]
    return paths or ([Path(params.root_path)] if params.root_path else [])


@SERVER.feature(lsp.INITIALIZED)
def initialized(ls: CodeLlamaServer, params: lsp.InitializedParams) -> None:
    """Start loading the model in the background, with progress."""
    ls.start_loading()


@SERVER.feature(lsp.WORKSPACE_DID_CHANGE_CONFIGURATION)
def did_change_configuration(ls: CodeLlamaServer, params: lsp.DidChangeConfigurationParams) -> None:
    """Apply new settings; reload the model only if a model setting changed."""
    ls.update_settings(params.settings)


@SERVER.feature(lsp.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)
def did_change_workspace_folders(ls: CodeLlamaServer, params: lsp.DidChangeWorkspaceFoldersParams) -> None:
    """Follow added and removed workspace folders (cross-file context reads files only inside them)."""
    paths = [[p for f in folders if (p := uri_to_path(f.uri)) is not None]
             for folders in (params.event.added, params.event.removed)]
    ls.core.crossfile.change_roots(added=paths[0], removed=paths[1])


@SERVER.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: CodeLlamaServer, params: lsp.DidOpenTextDocumentParams) -> None:
    """Track the document and parse it."""
    d = params.text_document
    try:
        ls.documents.open(d.uri, d.language_id, d.version, d.text)
    except Exception:
        log.exception("didOpen failed for %s", d.uri)


@SERVER.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: CodeLlamaServer, params: lsp.DidChangeTextDocumentParams) -> None:
    """Apply incremental changes (the tree is edited, not re-parsed from scratch)."""
    uri = params.text_document.uri
    try:
        for change in params.content_changes:
            rng = getattr(change, "range", None)
            span = None if rng is None else (rng.start.line, rng.start.character, rng.end.line, rng.end.character)
            ls.documents.change(uri, span, change.text, params.text_document.version)
            ls.core.crossfile.record_edit(uri, span[0] if span else 0)
    except Exception:
        log.exception("didChange failed for %s", uri)


@SERVER.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: CodeLlamaServer, params: lsp.DidCloseTextDocumentParams) -> None:
    """Forget the document."""
    ls.documents.close(params.text_document.uri)
    ls.typeahead.forget(params.text_document.uri)


@SERVER.feature(lsp.TEXT_DOCUMENT_INLINE_COMPLETION, lsp.InlineCompletionOptions())
async def inline_completion(ls: CodeLlamaServer, params: lsp.InlineCompletionParams) -> lsp.InlineCompletionList:
    """Ghost text at the cursor (a bad position or unknown document is a -32602, see ``protocol.guard``)."""
    return await ls.complete(params)


@SERVER.feature(lsp.TEXT_DOCUMENT_CODE_ACTION, lsp.CodeActionOptions(
    code_action_kinds=list(offers.KINDS.values()), resolve_provider=False))
def code_action(ls: CodeLlamaServer, params: lsp.CodeActionParams) -> list[lsp.CodeAction]:
    """Explain / refactor / add docstring for the selection or the definition around the cursor (no model call)."""
    doc = ls._document(params.text_document.uri)
    r = params.range
    span = (r.start.line, r.start.character, r.end.line, r.end.character)
    found = offers.offers(doc, span, params.context.only, ls.assistant.instruction_tuned_hint())
    return [lsp.CodeAction(title=o.title, kind=o.kind, command=lsp.Command(
        title=o.title, command=o.command, arguments=[doc.uri, range_json(o.span)])) for o in found]


def range_json(span: tuple[int, int, int, int]) -> dict[str, Any]:
    """An LSP Range as plain JSON (command arguments are sent as they are)."""
    return {"start": {"line": span[0], "character": span[1]}, "end": {"line": span[2], "character": span[3]}}


@SERVER.command(offers.EXPLAIN)
async def explain(ls: CodeLlamaServer, *args: Any) -> dict[str, Any]:
    """``[uri, range]`` → ``{"markdown"}``."""
    return await commands.execute(ls, offers.EXPLAIN, args)


@SERVER.command(offers.REFACTOR)
async def refactor(ls: CodeLlamaServer, *args: Any) -> dict[str, Any]:
    """``[uri, range, instruction?]`` → ``{"applied", "message"}`` (the edit goes through workspace/applyEdit)."""
    return await commands.execute(ls, offers.REFACTOR, args)


@SERVER.command(offers.DOCSTRING)
async def docstring(ls: CodeLlamaServer, *args: Any) -> dict[str, Any]:
    """``[uri, range]`` → ``{"applied", "message"}`` (the docstring goes through workspace/applyEdit)."""
    return await commands.execute(ls, offers.DOCSTRING, args)


@SERVER.feature(lsp.WINDOW_WORK_DONE_PROGRESS_CANCEL)
def progress_cancel(ls: CodeLlamaServer, params: lsp.WorkDoneProgressCancelParams) -> None:
    """The user cancelled an action's progress: stop its decoding at the next token."""
    cancel = ls.progress_cancels.get(str(params.token))
    if cancel is not None:
        cancel.set()


@SERVER.feature(STATS)
def stats(ls: CodeLlamaServer, params: Any) -> dict[str, Any]:
    """Counters, cache reuse and latency percentiles."""
    data = ls.stats.to_json()
    loaded = ls.core.loaded
    data["model"] = None if loaded is None else {
        "name": loaded.name, "device": loaded.device.type, "dtype": str(loaded.dtype).removeprefix("torch."),
        "quantization": loaded.quantization, "load_ms": round(loaded.load_ms, 1),
    }
    backend = ls.core.backend
    if backend is not None and loaded is None:  # a remote engine: what it serves (never the key or its variable)
        data["model"] = {"name": getattr(backend, "engine_model", ""), "backend": getattr(backend, "kind", ""),
                         "endpoint": ls.core.settings.endpoint}
    data["backend"] = ls.core.settings.backend
    engine = ls.core.engine  # the local engine's decode step (compiled / static / eager)
    data["decode_step"] = None if engine is None else engine.decode_step
    data["model_state"] = "ready" if backend is not None else ("error" if ls.core.load_error else "loading")
    data["model_error"] = ls.core.load_error
    data["recent_stops"] = [{"uri": uri, "stop": stop} for uri, stop in list(ls.core.recent_stops)]
    return data


@SERVER.feature(LAST_PROMPT)
def last_prompt(ls: CodeLlamaServer, params: Any) -> dict[str, Any]:
    """The exact prompt last sent to the model (ids and rendered text)."""
    return dict(ls.core.last_prompt)


@SERVER.feature(lsp.SHUTDOWN)
def shutdown(ls: CodeLlamaServer, params: Any) -> None:
    """Stop the worker (pending requests are cancelled)."""
    ls.scheduler.shutdown()
