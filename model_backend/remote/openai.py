"""An OpenAI-compatible server (vLLM, TGI's legacy route, llama-server) as the engine: ``/v1/completions``.

The prompt goes as a list of token ids (vLLM and llama-server accept it; neither implements OpenAI's ``suffix``),
so the exact PSM/SPM layout reaches the engine.  The stream carries text, not ids: the answer's ids are this
tokenizer's encoding of that text (the suggestion's text is what matters downstream).

What can be checked at start without a tokenize endpoint: that the server answers ``/v1/models`` (and with which
model), and that a prompt of our FIM ids is accepted as exactly that many prompt tokens.  Whether the engine's ids
mean the same pieces cannot be verified through this API; use the ``llama.cpp`` backend for that check.

Engine-side features used where the server has them, as extra fields: ``grammar`` (llama-server) and
``guided_regex`` (vLLM) for token healing; prefix caching is the server's own (``vllm serve --enable-prefix-caching``);
``usage.prompt_tokens_details.cached_tokens`` gives the reuse figures when the stream runs to its end.
"""

from __future__ import annotations

import time
from typing import Any

from model_backend.generation import GenerationRequest, StopReason
from model_backend.remote.base import RemoteBackend, Streamed, gbnf_prefix_grammar, regex_prefix, timings_of
from model_backend.remote.http import Connection, RemoteError
from model_backend.tokenization import CodeLlamaTokenizer


class OpenAIBackend(RemoteBackend):
    """``Backend`` over ``POST /v1/completions`` (streamed)."""

    kind = "openai"

    def __init__(self, conn: Connection, tok: CodeLlamaTokenizer, served_model: str | None = None) -> None:
        super().__init__(conn, tok)
        self.served_model = served_model  # the "model" field; None = the first one /v1/models lists

    def _check(self) -> None:
        fim = self.tok.require_fim()
        models = self.conn.get_json("/v1/models")
        data = models.get("data") if isinstance(models, dict) else None
        if not self.served_model:
            if not data:
                raise RemoteError(f"the engine at {self.conn.endpoint} lists no model at /v1/models", transient=False)
            self.served_model = str(data[0].get("id"))
        self.engine_model = self.served_model or ""
        for entry in data or []:
            if entry.get("id") == self.served_model:
                meta = entry.get("meta") or {}
                self.max_context = int(meta.get("n_ctx_train") or entry.get("max_model_len") or 0)
        probe = [self.tok.bos_id, fim.prefix, fim.suffix, fim.middle]
        reply = self.conn.post_json("/v1/completions", {"model": self.served_model, "prompt": probe,
                                                        "max_tokens": 1, "temperature": 0})
        used = (reply.get("usage") or {}).get("prompt_tokens")
        if used is not None and int(used) != len(probe):
            raise RemoteError(f"the engine at {self.conn.endpoint} ({self.engine_model}) read our {len(probe)} "
                              f"infilling ids as {used} prompt tokens: it does not take token-id prompts as they "
                              "are, so Code Llama's infilling layout cannot reach it", transient=False)

    def _request(self, prompt: list[int], req: GenerationRequest, max_new: int, heal: str,
                 banned: frozenset[int], forced: list[int]) -> Streamed:
        body: dict[str, Any] = {
            "model": self.served_model, "prompt": prompt, "max_tokens": max(1, max_new), "temperature": 0,
            "stream": True,
            # usage on every chunk where the engine can (vLLM): the reuse figures survive a stream we close early
            "stream_options": {"include_usage": True, "continuous_usage_stats": True},
        }
        if banned:
            body["logit_bias"] = {str(i): -100 for i in sorted(banned)}
        if heal:
            body["grammar"] = gbnf_prefix_grammar(heal)
            body["guided_regex"] = regex_prefix(heal)
        got = Streamed()
        forced_text = self.tok.decode_middle(forced)
        text = ""
        chunks = 0
        ids: list[int] = []
        with self.conn.stream("/v1/completions", body, req.cancel) as events:
            for event in events:
                if got.prompt_n is None:
                    got.prompt_n, got.cached_n, got.prompt_ms = timings_of(event)
                self._usage(event, got)
                choices = event.get("choices") or []
                if not choices:
                    continue
                piece = str(choices[0].get("text") or "")
                finish = choices[0].get("finish_reason")
                if piece:
                    chunks += 1
                    text += piece
                    ids = self.tok.encode_nospace(forced_text + text)[len(forced):] if forced else \
                        self.tok.encode_nospace(text)
                    if req.on_token is not None:
                        req.on_token(forced + ids)
                    if banned:
                        got.ids = ids[:1]
                        return got
                    reason = req.stop_after(forced + ids)
                    if reason == "max_tokens":  # the engine stops there too: read on to its usage figures
                        got.ids, got.stop = ids, reason
                        self._drain(events, got)
                        return got
                    if reason is not None:
                        got.ids, got.stop = ids, reason
                        return got
                if finish:
                    got.ids, got.stop = ids, self._finish(req, str(finish))
                    self._drain(events, got)
                    return got
        return self._stream_ended(req, got, ids)

    def _drain(self, events: Any, got: Streamed) -> None:
        """After ``finish_reason`` (or our own count reaching ``max_tokens``, where the engine stops too), the usage
        chunk (``include_usage``) and ``[DONE]`` follow: read them; any text still in them is not part of the answer."""
        for event in events:
            self._usage(event, got)

    @staticmethod
    def _usage(event: dict[str, Any], got: Streamed) -> None:
        usage = event.get("usage")
        if isinstance(usage, dict) and usage.get("prompt_tokens") is not None and got.prompt_n is None:
            cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
            if cached is None:  # the engine does not say what it reused (vLLM without --enable-prompt-tokens-details)
                return
            got.cached_n, got.prompt_n = int(cached), int(usage["prompt_tokens"]) - int(cached)

    @staticmethod
    def _finish(req: GenerationRequest, finish: str) -> StopReason:
        if finish == "stop":
            return "eos"
        if req.deadline is not None and time.monotonic() >= req.deadline:
            return "time"
        return "max_tokens"
