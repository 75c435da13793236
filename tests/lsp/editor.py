"""A tiny editor model for end-to-end tests: keeps the text, sends LSP changes in UTF-16 units like VS Code."""

from __future__ import annotations

import sys
from typing import Any

from lsprotocol import types as lsp
from pytest_lsp import ClientServerConfig, LanguageClient

SERVER = ClientServerConfig(server_command=[sys.executable, "-m", "lsp_server", "--log-level", "info"],
                            server_env=None)
CAPABILITIES = lsp.ClientCapabilities(window=lsp.WindowClientCapabilities(work_done_progress=True))


def utf16_col(line_text: str) -> int:
    return len(line_text.encode("utf-16-le")) // 2


class Buffer:
    """One open document on the client side."""

    def __init__(self, client: LanguageClient, uri: str, text: str, language: str = "python") -> None:
        self.client, self.uri, self.text, self.version = client, uri, text, 1
        client.text_document_did_open(lsp.DidOpenTextDocumentParams(
            text_document=lsp.TextDocumentItem(uri=uri, language_id=language, version=1, text=text)))

    def position(self, offset: int) -> lsp.Position:
        """LSP position (UTF-16 columns) of a str offset."""
        before = self.text[:offset]
        line = before.count("\n")
        return lsp.Position(line=line, character=utf16_col(before[before.rfind("\n") + 1:]))

    def end(self) -> lsp.Position:
        return self.position(len(self.text))

    def insert(self, offset: int, new: str) -> None:
        """Type ``new`` at ``offset`` as one incremental change."""
        pos = self.position(offset)
        self.text = self.text[:offset] + new + self.text[offset:]
        self.version += 1
        self.client.text_document_did_change(lsp.DidChangeTextDocumentParams(
            text_document=lsp.VersionedTextDocumentIdentifier(uri=self.uri, version=self.version),
            content_changes=[lsp.TextDocumentContentChangePartial(range=lsp.Range(start=pos, end=pos), text=new)]))

    async def complete(self, offset: int | None = None, invoked: bool = False) -> lsp.InlineCompletionList | None:
        """Ask as the editor does while typing (Automatic), or as it does when the user asks or cycles (Invoked)."""
        pos = self.end() if offset is None else self.position(offset)
        kind = lsp.InlineCompletionTriggerKind.Invoked if invoked else lsp.InlineCompletionTriggerKind.Automatic
        result = await self.client.text_document_inline_completion_async(lsp.InlineCompletionParams(
            text_document=lsp.TextDocumentIdentifier(uri=self.uri), position=pos,
            context=lsp.InlineCompletionContext(trigger_kind=kind)))
        assert result is None or isinstance(result, lsp.InlineCompletionList)
        return result


async def request(client: LanguageClient, method: str, params: Any = None) -> Any:
    """A custom request (``codellama/stats``, ``codellama/lastPrompt``)."""
    return await client.protocol.send_request_async(method, params or {})


def as_dict(obj: Any) -> dict[str, Any]:
    """Custom responses arrive as namedtuples; turn them back into dicts."""
    if hasattr(obj, "_asdict"):
        return {k: as_dict(v) for k, v in obj._asdict().items()}
    if isinstance(obj, list | tuple):
        return [as_dict(v) for v in obj]
    return obj


def offset_of(text: str, position: lsp.Position) -> int:
    """str offset of an LSP position (UTF-16 columns) in ``text``."""
    lines = text.split("\n")
    start = sum(len(line) + 1 for line in lines[:position.line])
    line, units = lines[position.line], 0
    for i, ch in enumerate(line):
        if units >= position.character:
            return start + i
        units += 2 if ord(ch) > 0xFFFF else 1
    return start + len(line)


def replace(buf: Buffer, start: int, end: int, new: str) -> None:
    """Replace ``buf.text[start:end]`` with ``new`` as one incremental change (e.g. applying a server's edit)."""
    a, b = buf.position(start), buf.position(end)
    buf.text = buf.text[:start] + new + buf.text[end:]
    buf.version += 1
    buf.client.text_document_did_change(lsp.DidChangeTextDocumentParams(
        text_document=lsp.VersionedTextDocumentIdentifier(uri=buf.uri, version=buf.version),
        content_changes=[lsp.TextDocumentContentChangePartial(range=lsp.Range(start=a, end=b), text=new)]))
