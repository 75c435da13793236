"""Every error the server raises on purpose, in one hierarchy (base: ``CodeLlamaError``, which knows its
JSON-RPC code).  The classes live next to the code that raises them; this module is the index to import from.
"""

from __future__ import annotations

from lsp_server.actions.instruct import PromptError
from lsp_server.actions.offers import ArgsError, Refusal
from lsp_server.completion.core import NotReadyError
from lsp_server.completion.documents import PositionError, UnknownDocumentError
from model_backend.errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    REQUEST_CANCELLED,
    SERVER_NOT_INITIALIZED,
    CodeLlamaError,
    InvalidParamsError,
    InvalidRequestError,
    ServiceError,
)
from model_backend.generation import EngineError
from model_backend.loading import ModelLoadError
from model_backend.tokenization import TokenizerError

__all__ = [
    "INTERNAL_ERROR", "INVALID_PARAMS", "INVALID_REQUEST", "METHOD_NOT_FOUND", "PARSE_ERROR", "REQUEST_CANCELLED",
    "SERVER_NOT_INITIALIZED", "ArgsError", "CodeLlamaError", "EngineError", "InvalidParamsError",
    "InvalidRequestError", "ModelLoadError", "NotReadyError", "PositionError", "PromptError", "Refusal",
    "ServiceError", "TokenizerError", "UnknownDocumentError",
]
