"""The embedded model converted to GGUF (scripts/convert_gguf.py) and served by a real llama-server.

What a user of an external engine relies on: the server tokenizes exactly as this project does, knows the infilling
ids (and stops on EOT), and computes the same model, so an SPM prompt sent as token ids gets the same greedy answer.
``tok`` is the embedded model's tokenizer (tests/conftest.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from gguf import GGUFReader

from model_backend.tokenization import CodeLlamaTokenizer
from tests.engines.llama_server import EMBEDDED_WEIGHTS, LlamaServer, StartLlamaServer, httpx

PROBES = [
    "def f(x):\n    return x",
    "    Hello\n    Hello",
    "\tif y:  # two  spaces\n\t\tpass\n",
    "x = 12345 + 0.5e-3",
    "naïve café ☺ 🦙 日本",
    "s = '▁<PRE> <EOT>'",  # the infilling markers as plain text stay plain text
]
PREFIX = "def add(a, b):\n    return "
SUFFIX = "\n\n\nprint(add(1, 2))\n"


@pytest.fixture
def server(start_llama_server: StartLlamaServer, embedded_gguf: Path) -> LlamaServer:
    return start_llama_server(embedded_gguf)


def spm_prompt(tok: CodeLlamaTokenizer, prefix: str, suffix: str) -> list[int]:
    """SPM as CODELLAMA.md lays it out: [BOS, PRE, SUF] + enc_nospace(suffix) + [MID] + enc(prefix)."""
    fim = tok.require_fim()
    return [tok.bos_id, fim.prefix, fim.suffix, *tok.encode_nospace(suffix), fim.middle, *tok.encode(prefix)]


def post(server: LlamaServer, path: str, body: dict[str, Any]) -> dict[str, Any]:
    reply = httpx.post(f"{server.url}{path}", json=body, timeout=30.0)
    assert reply.status_code == 200, reply.text
    data: dict[str, Any] = reply.json()
    return data


def test_gguf_carries_the_tokenizers_fim_ids(embedded_gguf: Path, tok: CodeLlamaTokenizer) -> None:
    fields = GGUFReader(embedded_gguf).fields
    fim = tok.require_fim()
    assert (fim.prefix, fim.suffix, fim.middle, fim.eot) == (3, 4, 5, 6)
    expected = {"fim_pre": fim.prefix, "fim_suf": fim.suffix, "fim_mid": fim.middle, "eot": fim.eot}
    written = {name: int(fields[f"tokenizer.ggml.{name}_token_id"].contents()) for name in expected}
    assert written == expected
    assert int(fields["tokenizer.ggml.bos_token_id"].contents()) == tok.bos_id
    assert int(fields["tokenizer.ggml.eos_token_id"].contents()) == tok.eos_id
    assert len(fields["tokenizer.ggml.tokens"].contents()) == tok.vocab_size
    assert fields["general.file_type"].contents() == 0  # all-f32 (the --outtype asked for)


def test_server_tokenizes_like_our_tokenizer(server: LlamaServer, tok: CodeLlamaTokenizer) -> None:
    for text in PROBES:
        got = post(server, "/tokenize", {"content": text, "parse_special": False})["tokens"]
        assert got == tok.encode(text), text
    # and back: the ids of a middle decode to the same text on both sides
    ids = tok.encode_nospace("    return x\n")
    assert post(server, "/detokenize", {"tokens": ids})["content"] == tok.decode_middle(ids)
    # Why prompts go to the server as ids: its text tokenization parses special pieces by default (/tokenize and
    # text prompts of /completion alike), so a user's file containing "▁<EOT>" would forge the control token.
    forged = post(server, "/tokenize", {"content": "s = '▁<EOT>'"})["tokens"]
    assert tok.require_fim().eot in forged
    assert tok.require_fim().eot not in tok.encode("s = '▁<EOT>'")


def test_server_knows_the_infilling_tokens(server: LlamaServer, tok: CodeLlamaTokenizer) -> None:
    fim = tok.require_fim()
    pieces = post(server, "/tokenize", {"content": "▁<PRE>▁<SUF>▁<MID>▁<EOT>", "parse_special": True})["tokens"]
    assert pieces == [fim.prefix, fim.suffix, fim.middle, fim.eot]
    # EOT ends generation: make it the only likely token and the server stops at once, as at end of text.
    reply = post(
        server,
        "/completion",
        {
            "prompt": spm_prompt(tok, PREFIX, SUFFIX),
            "n_predict": 16,
            "temperature": 0,
            "top_k": 1,
            "logit_bias": [[fim.eot, 100.0]],
            "return_tokens": True,
        },
    )
    assert reply["stop_type"] == "eos"
    assert reply["content"] == ""
    assert reply["tokens"] in ([], [fim.eot])


def test_spm_ids_prompt_gets_the_models_greedy_answer(server: LlamaServer, tok: CodeLlamaTokenizer) -> None:
    prompt = spm_prompt(tok, PREFIX, SUFFIX)
    body = {"prompt": prompt, "n_predict": 16, "temperature": 0, "top_k": 1, "return_tokens": True}
    reply = post(server, "/completion", body)
    tokens: list[int] = reply["tokens"]
    assert 1 <= len(tokens) <= 16
    assert reply["timings"]["prompt_n"] == len(prompt)  # the ids went in untouched, none added or merged
    assert reply["content"] == tok.decode_middle(tokens)

    # The same weights in transformers (f32, as the GGUF): each token the server chose is the argmax there too
    # (teacher-forced, to a tolerance for the two engines' float rounding).
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(EMBEDDED_WEIGHTS, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(torch.tensor([prompt + tokens])).logits[0]
    for step, token in enumerate(tokens):
        row = logits[len(prompt) - 1 + step]
        assert float(row[token]) >= float(row.max()) - 1e-3, (step, token, int(row.argmax()))

    # Asked again, the prompt comes from the slot's cache: only what is new is computed.
    again = post(server, "/completion", {**body, "cache_prompt": True})
    assert again["tokens"] == tokens
    assert again["timings"]["prompt_n"] <= 1
    assert again["tokens_cached"] >= len(prompt)


def test_openai_completions_take_the_same_ids(server: LlamaServer, tok: CodeLlamaTokenizer) -> None:
    prompt = spm_prompt(tok, PREFIX, SUFFIX)
    native = post(server, "/completion", {"prompt": prompt, "n_predict": 8, "temperature": 0, "top_k": 1})
    openai = post(server, "/v1/completions", {"prompt": prompt, "max_tokens": 8, "temperature": 0, "top_k": 1})
    assert openai["object"] == "text_completion"
    assert openai["usage"]["prompt_tokens"] == len(prompt)  # no BOS added in front of an id prompt
    assert openai["choices"][0]["text"] == native["content"]
