"""Remote engines behind the ``Backend`` protocol: llama.cpp's llama-server and OpenAI-compatible servers.

``connect`` builds the backend a ``backend`` setting names; the completion pipeline and the code actions use it
exactly like the in-process engine (same prompts, post-processing, fit check, cancellation, stats).
"""

from __future__ import annotations

from model_backend.remote.base import RemoteBackend
from model_backend.remote.http import Connection, RemoteError
from model_backend.remote.llamacpp import DEFAULT_SLOTS, SLOT_CHOICES, LlamaCppBackend
from model_backend.remote.openai import OpenAIBackend
from model_backend.tokenization import CodeLlamaTokenizer

KINDS = ("llama.cpp", "openai")

__all__ = ["DEFAULT_SLOTS", "KINDS", "SLOT_CHOICES", "LlamaCppBackend", "OpenAIBackend", "RemoteBackend",
           "RemoteError", "connect"]


def connect(kind: str, endpoint: str, tok: CodeLlamaTokenizer, tokenizer_name: str, key_env: str | None = None,
            timeout_ms: int = 10_000, slots: str = DEFAULT_SLOTS) -> RemoteBackend:
    """A backend for ``kind`` at ``endpoint`` (not yet contacted: call ``check()``); ``slots`` is llama.cpp's slot
    choice (``SLOT_CHOICES``)."""
    conn = Connection(endpoint, key_env, timeout_ms)
    if kind == "llama.cpp":
        return LlamaCppBackend(conn, tok, tokenizer_name, slots=slots)
    if kind == "openai":
        return OpenAIBackend(conn, tok)
    raise ValueError(f"unknown remote backend {kind!r}")
