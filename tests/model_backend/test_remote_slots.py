"""Which llama-server slot a request names (``engineSlots``): the body's ``id_slot``, without an engine.

What the rule does to several editors on a real engine is measured by benchmarks/many_editors.py (a test of one
user switching files could not tell the choices apart: llama-server restores evicted prompts from host memory).
"""

from __future__ import annotations

import zlib

import pytest

from lsp_server.settings import Settings, about
from model_backend.generation import GenerationRequest
from model_backend.remote import DEFAULT_SLOTS, SLOT_CHOICES, LlamaCppBackend
from model_backend.remote.http import Connection
from model_backend.tokenization import CodeLlamaTokenizer
from tests.engines.llama_server import EMBEDDED_WEIGHTS


def backend(slots: str) -> LlamaCppBackend:
    tok = CodeLlamaTokenizer(EMBEDDED_WEIGHTS / "tokenizer.model")
    b = LlamaCppBackend(Connection("http://127.0.0.1:9", None, 1000), tok, "embedded", slots=slots)
    b.total_slots = 8  # what the engine's /props would say for --parallel 8
    return b


def req(uri: str) -> GenerationRequest:
    return GenerationRequest(prompt_ids=[1, 2], max_new_tokens=4, stop_ids=set(), document=uri)


def test_similarity_lets_the_engine_route() -> None:
    assert backend("similarity").slot_for(req("file:///a.py")) == -1


def test_document_gives_each_uri_its_own_stable_slot() -> None:
    b = backend("document")
    uris = [f"file:///home/dev/src/file_{i}.py" for i in range(20)]
    got = [b.slot_for(req(u)) for u in uris]
    assert got == [zlib.crc32(u.encode()) % 8 for u in uris]  # the documented rule, the same on every call
    assert len(set(got)) > 1
    assert b.slot_for(req("")) == -1  # a request without a document (a code action) is routed by the engine
    b.total_slots = 1
    assert b.slot_for(req(uris[0])) == -1  # one slot: nothing to choose


def test_a_fixed_slot_wins_and_bad_choices_are_refused() -> None:
    b = backend("document")
    b.slot = 3
    assert b.slot_for(req("file:///a.py")) == 3
    with pytest.raises(ValueError):
        backend("round-robin")


def test_the_setting_offers_exactly_the_backends_choices() -> None:
    found = about("engine_slots")
    assert found is not None and found.choices == SLOT_CHOICES
    assert Settings().engine_slots == DEFAULT_SLOTS == "similarity"
