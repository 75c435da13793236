"""llama.cpp's ``llama-server`` as the engine: our prompt ids to ``/completion``, streamed, its cache reused.

Why ``/completion`` with token ids and never ``/infill``: ``/infill`` lays the prompt out itself (PSM-like, the
cursor's line mid-prompt), which re-evaluates hundreds of tokens per keystroke; our SPM ids keep everything
before the cursor stable, so with ``cache_prompt`` the engine computes only the new tokens (its own figures,
``timings.prompt_n`` / ``cache_n``, come back per request and go into ``codellama/stats``).

Slot choice (the ``engineSlots`` setting; benchmarks/many_editors.py measures the two against each other):
``similarity`` sends ``id_slot: -1``, and llama-server routes each request to the idle slot whose cached prompt is
most alike; ``document`` sends each document to its own slot (a stable hash of its URI modulo the engine's
``total_slots``), which keeps a document's cache even while other requests run, with no coordination between
editors' servers, at the price of two documents sharing a slot now and then.
"""

from __future__ import annotations

import time
import zlib
from typing import Any

from model_backend.generation import GenerationRequest, StopReason
from model_backend.remote.base import RemoteBackend, Streamed, gbnf_prefix_grammar, timings_of
from model_backend.remote.http import Connection, RemoteError
from model_backend.tokenization import CodeLlamaTokenizer, FimIds

PROBE = "def f(x):\n\tif x:  # naïve ☺\n        return [1, 23, 456]\n"
FINAL_FIELDS = ["content", "tokens", "stop", "stop_type", "timings", "tokens_cached", "id_slot"]
SLOT_CHOICES = ("similarity", "document")
DEFAULT_SLOTS = "similarity"


class LlamaCppBackend(RemoteBackend):
    """``Backend`` over llama-server's native API."""

    kind = "llama.cpp"

    def __init__(self, conn: Connection, tok: CodeLlamaTokenizer, tokenizer_name: str, slot: int = -1,
                 slots: str = DEFAULT_SLOTS) -> None:
        super().__init__(conn, tok)
        if slots not in SLOT_CHOICES:
            raise ValueError(f"slots must be one of {', '.join(SLOT_CHOICES)}, not {slots!r}")
        self.tokenizer_name = tokenizer_name
        self.slot = slot  # >= 0: always this slot (a measurement's fixed assignment); -1: by ``slots``
        self.slots = slots
        self.total_slots = 1  # the engine's --parallel, read at the check

    def slot_for(self, req: GenerationRequest) -> int:
        """The ``id_slot`` to send: a fixed slot, the document's own, or -1 (the engine's similarity routing)."""
        if self.slot >= 0:
            return self.slot
        if self.slots == "document" and req.document and self.total_slots > 1:
            return zlib.crc32(req.document.encode()) % self.total_slots
        return -1

    def _check(self) -> None:
        fim = self.tok.require_fim()
        props = self.conn.get_json("/props")
        self.engine_model = str(props.get("model_alias") or props.get("model_path") or "the engine's model")
        settings = props.get("default_generation_settings") or {}
        self.max_context = int(settings.get("n_ctx") or 0)
        self.total_slots = max(1, int(props.get("total_slots") or 1))
        ours = self.tok.encode(PROBE)
        theirs = self.conn.post_json("/tokenize", {"content": PROBE}).get("tokens")
        pieces = "".join(self.tok.sp.id_to_piece(i) for i in (fim.prefix, fim.suffix, fim.middle, fim.eot))
        special = self.conn.post_json("/tokenize", {"content": pieces, "parse_special": True}).get("tokens")
        wanted = [fim.prefix, fim.suffix, fim.middle, fim.eot]
        if special != wanted:
            raise RemoteError(self._mismatch(fim, special, "its infilling tokens (▁<PRE> ▁<SUF> ▁<MID> ▁<EOT>) are "
                                             f"{special} where this tokenizer has {wanted}"), transient=False)
        if theirs != ours:
            raise RemoteError(self._mismatch(fim, theirs, "a probe string tokenizes differently"), transient=False)

    def _mismatch(self, fim: FimIds, got: Any, what: str) -> str:
        return (f"the engine's model ({self.engine_model}) does not share the vocabulary of this server's tokenizer "
                f"({self.tokenizer_name}): {what}. Serve a Code Llama 7B/13B GGUF converted from the same checkpoint "
                "(scripts/convert_gguf.py sets its infilling ids), or set `tokenizer` to that checkpoint's folder")

    def _request(self, prompt: list[int], req: GenerationRequest, max_new: int, heal: str,
                 banned: frozenset[int], forced: list[int]) -> Streamed:
        body: dict[str, Any] = {
            "prompt": prompt, "n_predict": max(1, max_new), "temperature": 0, "top_k": 1, "cache_prompt": True,
            "stream": True, "return_tokens": True, "timings_per_token": True, "id_slot": self.slot_for(req),
            "response_fields": FINAL_FIELDS,
        }
        remaining = self._remaining_ms(req)
        if remaining is not None:
            body["t_max_predict_ms"] = remaining
        if banned:
            body["logit_bias"] = [[i, False] for i in sorted(banned)]
        if heal:
            body["grammar"] = gbnf_prefix_grammar(heal)
        got = Streamed()
        out: list[int] = []
        with self.conn.stream("/completion", body, req.cancel) as events:
            for event in events:
                if got.prompt_n is None:
                    got.prompt_n, got.cached_n, got.prompt_ms = timings_of(event)
                for token in event.get("tokens") or []:
                    if token in req.stop_ids:
                        got.ids, got.stop = out, "eos"
                        return got
                    out.append(int(token))
                    if req.on_token is not None:
                        req.on_token(forced + out)
                    if banned:  # the first token of an alternative: the caller goes on without the ban
                        got.ids = out
                        return got
                    reason = req.stop_after(forced + out)
                    if reason is not None:
                        got.ids, got.stop = out, reason  # leaving the block closes the stream: the slot stops
                        return got
                if event.get("stop") is True:
                    got.ids, got.stop = out, self._final_stop(req, event)
                    return got
        return self._stream_ended(req, got, out)

    @staticmethod
    def _final_stop(req: GenerationRequest, event: dict[str, Any]) -> StopReason:
        kind = event.get("stop_type")
        if kind == "eos":
            return "eos"
        if kind == "word":
            return "rule"
        if req.deadline is not None and time.monotonic() >= req.deadline:
            return "time"
        return "max_tokens"
