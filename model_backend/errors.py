"""The one error hierarchy of the project: every error knows its JSON-RPC code and says what went wrong.

Why here: ``model_backend`` must not import ``lsp_server``, yet its errors (a model that does not load, a
prompt too long for the engine) reach the client through the server.  The base lives at the bottom of the
import graph; ``lsp_server.errors`` re-exports it with the server's own errors, and the protocol edge maps
any of them to a JSON-RPC error in one place (``lsp_server.protocol.to_response_error``).
"""

from __future__ import annotations

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_NOT_INITIALIZED = -32002
REQUEST_CANCELLED = -32800


class CodeLlamaError(Exception):
    """Base of every error this project raises on purpose; ``code`` is the JSON-RPC code it maps to."""

    code: int = INTERNAL_ERROR

    @property
    def message(self) -> str:
        return str(self) or type(self).__name__

    @property
    def client_error(self) -> bool:
        """A mistake in what the client sent (one log line, no traceback), not a fault of the server."""
        return self.code != INTERNAL_ERROR


class InvalidParamsError(CodeLlamaError):
    """The request's parameters do not describe something the server can work on."""

    code = INVALID_PARAMS


class InvalidRequestError(CodeLlamaError):
    """The message is not a valid JSON-RPC request, or not one allowed now (e.g. after ``shutdown``)."""

    code = INVALID_REQUEST


class ServiceError(CodeLlamaError):
    """The server could not do what was asked (model missing, engine refused); the message says why."""

    code = INTERNAL_ERROR
