"""What every remote backend shares: one HTTP client, SSE reading, fault messages, and backoff.

Why a module of its own: llama.cpp's ``/completion`` and the OpenAI ``/v1/completions`` differ only in their
request and chunk shapes; reaching the engine, telling a user what went wrong (once, in words that name the fix)
and waiting before the next try are the same for both.  Everything here runs on the model worker thread with a
synchronous ``httpx.Client``: the asyncio loop never waits on the network.

The API key is read from the environment variable the settings name and goes only into the ``Authorization``
header; no message, log line or stat ever contains it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import httpx

from model_backend.generation import EngineError

log = logging.getLogger(__name__)

BACKOFF_FIRST_S = 0.5  # after a fault, requests are answered empty (no network) for this long, doubling per fault
BACKOFF_MAX_S = 4.0
CANCEL_POLL_S = 0.02  # how often an open stream's watcher looks at the request's cancel flag


class RemoteError(EngineError):
    """The engine could not answer; the message is stable (one per fault kind) so the user sees it once."""

    def __init__(self, message: str, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient  # worth retrying later (engine down, 5xx, timeout) vs. a wrong set-up


class Interrupted(RemoteError):
    """The stream ended before the engine said it was done (engine killed, connection dropped)."""


def api_key(env_name: str | None) -> str | None:
    """The key from the environment variable named ``env_name`` (None when unset or empty)."""
    if not env_name:
        return None
    return os.environ.get(env_name) or None


class Connection:
    """One engine endpoint: a keep-alive client, error mapping and backoff state.  Worker thread only."""

    def __init__(self, endpoint: str, key_env: str | None = None, timeout_ms: int = 10_000) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.key_env = key_env
        self.timeout_s = timeout_ms / 1000
        headers = {"User-Agent": "codellama-lsp"}
        key = api_key(key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self.client = httpx.Client(base_url=self.endpoint, headers=headers,
                                   timeout=httpx.Timeout(self.timeout_s, connect=min(self.timeout_s, 5.0)))
        self._down_until = 0.0
        self._backoff = BACKOFF_FIRST_S
        self._last_fault: RemoteError | None = None

    def close(self) -> None:
        self.client.close()

    # -- backoff -----------------------------------------------------------------------------------------
    def guard(self) -> None:
        """Raise the last fault again, without touching the network, while its backoff runs."""
        if self._last_fault is not None and time.monotonic() < self._down_until:
            raise self._last_fault

    def failed(self, fault: RemoteError) -> RemoteError:
        """Remember a fault: the next requests get it at once until the backoff ends (then one try)."""
        if fault.transient:
            self._down_until = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, BACKOFF_MAX_S)
            self._last_fault = fault
        log.warning("engine fault: %s", fault)
        return fault

    def succeeded(self) -> None:
        if self._last_fault is not None:
            log.info("engine at %s answers again", self.endpoint)
        self._down_until, self._backoff, self._last_fault = 0.0, BACKOFF_FIRST_S, None

    # -- requests ----------------------------------------------------------------------------------------
    def get_json(self, path: str) -> Any:
        with self._mapped():
            reply = self.client.get(path)
            self._check_status(reply)
            return reply.json()

    def post_json(self, path: str, body: dict[str, Any]) -> Any:
        with self._mapped():
            reply = self.client.post(path, json=body)
            self._check_status(reply)
            return reply.json()

    @contextmanager
    def stream(self, path: str, body: dict[str, Any],
               cancel: threading.Event | None = None) -> Iterator[Iterator[dict[str, Any]]]:
        """POST ``body`` and yield its server-sent events as dicts; leaving the block closes the connection,
        which is how the engine learns to stop decoding (cancel, superseded, stop rule, deadline).

        With ``cancel``: setting it closes the connection at once, even while the engine is still reading a long
        prompt and no event has come (the events then just end; the caller sees the flag)."""
        with self._mapped(), self.client.stream("POST", path, json=body) as reply:
            if reply.status_code >= 400:
                reply.read()
                self._check_status(reply)
            done = threading.Event()
            if cancel is not None:
                threading.Thread(target=_close_on_cancel, args=(reply, cancel, done), daemon=True,
                                 name="stream-cancel").start()
            try:
                yield self._events(reply, cancel)
            finally:
                done.set()

    def _events(self, reply: httpx.Response, cancel: threading.Event | None = None) -> Iterator[dict[str, Any]]:
        try:
            yield from self._parsed(reply)
        except (httpx.HTTPError, httpx.StreamError):
            if cancel is not None and cancel.is_set():
                return  # closed by the cancel watcher: not a fault
            raise

    def _parsed(self, reply: httpx.Response) -> Iterator[dict[str, Any]]:
        for line in reply.iter_lines():
            if not line.startswith("data:"):
                continue  # blank separators, comments, "event:" lines
            data = line[5:].strip()
            if data == "[DONE]":
                return
            try:
                event = json.loads(data)
            except ValueError as exc:
                raise RemoteError(f"the engine at {self.endpoint} sent a malformed stream event") from exc
            if isinstance(event, dict) and "error" in event:
                raise RemoteError(f"the engine at {self.endpoint} reported an error mid-answer: "
                                  f"{_error_text(event)}")
            if isinstance(event, dict):
                yield event

    @contextmanager
    def _mapped(self) -> Iterator[None]:
        """httpx's exceptions as ``RemoteError``s, one stable message per kind of fault."""
        where = self.endpoint
        try:
            yield
        except RemoteError:
            raise
        except httpx.ConnectError as exc:
            raise RemoteError(f"cannot reach the engine at {where} (connection refused or no such host): "
                              "is it running? Completions resume when it answers") from exc
        except httpx.TimeoutException as exc:
            raise RemoteError(f"the engine at {where} did not answer within requestTimeoutMs "
                              f"({self.timeout_s * 1000:.0f} ms): it is overloaded or hung") from exc
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            raise Interrupted(f"the engine at {where} dropped the connection mid-answer "
                              "(engine stopped or restarted?)") from exc
        except httpx.HTTPError as exc:
            raise RemoteError(f"request to the engine at {where} failed: {type(exc).__name__}") from exc

    def _check_status(self, reply: httpx.Response) -> None:
        code = reply.status_code
        if code < 400:
            return
        log.warning("engine %s answered HTTP %d: %s", self.endpoint, code, reply.text[:500])
        if code in (401, 403):
            hint = (f"check the key in the environment variable {self.key_env}" if self.key_env
                    else "the engine wants a key: set apiKeyEnv to the name of an environment variable holding it")
            raise RemoteError(f"the engine at {self.endpoint} refused the request (HTTP {code}, bad or missing API "
                              f"key): {hint}", transient=True)
        if code >= 500:
            raise RemoteError(f"the engine at {self.endpoint} failed (HTTP {code}); retrying with backoff")
        raise RemoteError(f"the engine at {self.endpoint} rejected the request (HTTP {code}): "
                          f"{_error_text(_json_or_none(reply))}", transient=False)


def _close_on_cancel(reply: httpx.Response, cancel: threading.Event, done: threading.Event) -> None:
    """Close ``reply`` as soon as ``cancel`` is set, unless the stream ends first (``done``)."""
    while not done.is_set():
        if cancel.wait(CANCEL_POLL_S):
            if done.is_set():
                return
            # Shut the socket down rather than close it: that wakes the reading thread's blocked read (with an end
            # of stream) and tells the engine the client went away, so it drops the request, prompt or answer.
            stream = reply.extensions.get("network_stream")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if isinstance(sock, socket.socket):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            return


def _json_or_none(reply: httpx.Response) -> Any:
    try:
        return reply.json()
    except ValueError:
        return None


def _error_text(data: Any) -> str:
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):
            return str(err.get("message") or err)[:300]
        if err is not None:
            return str(err)[:300]
    return "no details"
