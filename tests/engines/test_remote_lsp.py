"""The real server process, over LSP, generating through a real llama-server (built from source, no mocks).

What a user of a shared engine relies on: the same suggestions as the local engine, reuse visible in
``codellama/stats`` (the engine's own figures), cancellation reaching the engine, one clear message per fault
and completions again once the engine is back, and several editors on one engine without answers crossing.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types as lsp
from pytest_lsp import LanguageClient, make_test_lsp_client

from model_backend.generation import GenerationRequest
from model_backend.remote import connect
from model_backend.tokenization import CodeLlamaTokenizer
from tests.engines.llama_server import EMBEDDED_WEIGHTS, REPO, LlamaServer, httpx, launch, stop
from tests.lsp.editor import CAPABILITIES, Buffer, as_dict
from tests.lsp.editor import request as raw_request

DEPOT = REPO / "benchmarks" / "repo_context" / "depot"
# Small prompts keep every request inside one slot's context (8 slots share -c 16384) and the module quick.
COMMON = {"dtype": "float32", "prefixTokens": 600, "suffixTokens": 200, "maxNewTokens": 16, "timeBudgetMs": 60_000,
          "suggestions": 1, "requestTimeoutMs": 60_000}


@pytest.fixture(scope="module")
def engine(llama_server_bin: Path, embedded_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        LlamaServer]:
    server = launch(llama_server_bin, embedded_gguf, log_dir=tmp_path_factory.mktemp("llama"), parallel=8,
                    ctx=16384)
    yield server
    stop(server)


async def request(client: LanguageClient, method: str) -> dict[str, Any]:
    reply: dict[str, Any] = as_dict(await raw_request(client, method))
    return reply


async def start_client(settings: dict[str, Any], env: dict[str, str] | None = None,
                       root: Path = DEPOT) -> LanguageClient:
    client = make_test_lsp_client()
    await client.start_io(sys.executable, "-m", "lsp_server", "--log-level", "info",
                          env={**os.environ, **(env or {})})
    await client.initialize_session(lsp.InitializeParams(
        capabilities=CAPABILITIES, root_uri=root.as_uri(), initialization_options={**COMMON, **settings}))
    for _ in range(600):  # the model (or the engine check) loads in the background
        stats = await request(client, "codellama/stats")
        if stats["model_state"] != "loading":
            break
        await asyncio.sleep(0.1)
    return client


@pytest.fixture
async def clients() -> AsyncIterator[list[LanguageClient]]:
    started: list[LanguageClient] = []
    yield started
    for client in started:
        await client.shutdown_session()


def text_of(result: lsp.InlineCompletionList | None) -> str | None:
    if result is None or not result.items:
        return None
    text = result.items[0].insert_text
    return text if isinstance(text, str) else text.value


def cursor_positions(text: str, limit: int) -> list[int]:
    """Where an editor asks while one types a line: after its indentation, and after its first word."""
    out: list[int] = []
    pos = 0
    for line in text.splitlines(keepends=True):
        body = line.lstrip(" ")
        start = pos + len(line) - len(body)
        if body.strip() and not body.startswith(("#", '"')):
            out.append(start)
            word = len(body) - len(body.lstrip("abcdefghijklmnopqrstuvwxyz_"))
            if 0 < word < len(body.rstrip()):
                out.append(start + word)
        pos += len(line)
    return out[:limit]


def typed_to(text: str, offset: int) -> str:
    """The file as it is while that line is being typed: the line ends at the cursor."""
    end = text.find("\n", offset)
    return text[:offset] + (text[end:] if end >= 0 else "")


async def test_suggestions_equal_the_local_engines(engine: LlamaServer, clients: list[LanguageClient]):
    text = (DEPOT / "orders.py").read_text()
    local = await start_client({"backend": "local"})
    remote = await start_client({"backend": "llama.cpp", "endpoint": engine.url})
    clients += [local, remote]
    assert (await request(remote, "codellama/stats"))["model"]["backend"] == "llama.cpp"
    positions = cursor_positions(text, 32)
    assert len(positions) >= 30
    pairs = []
    for n, p in enumerate(positions):
        uri = (DEPOT / f"orders_{n}.py").as_uri()
        a, b = Buffer(local, uri, typed_to(text, p)), Buffer(remote, uri, typed_to(text, p))
        pairs.append((text_of(await a.complete(p)), text_of(await b.complete(p))))
    shown = sum(x is not None for x, _ in pairs)
    assert shown >= 10, pairs  # enough real suggestions for the comparison to mean something
    differ = [(p, x, y) for p, (x, y) in zip(positions, pairs, strict=True) if x != y]
    assert differ == []
    stats = await request(remote, "codellama/stats")
    assert stats["reused_tokens"] > 0 and stats["errors"] == 0


async def test_typing_prefills_at_most_three_tokens_per_keystroke(engine: LlamaServer,
                                                                  clients: list[LanguageClient]):
    text = (DEPOT / "ledger.py").read_text()
    client = await start_client({"backend": "llama.cpp", "endpoint": engine.url, "alternatives": 0})
    clients.append(client)
    buf = Buffer(client, (DEPOT / "ledger.py").as_uri(), text + "\n\ndef total_of(entries):\n    ")
    await buf.complete()  # the whole prompt once
    per_keystroke: list[int] = []
    for ch in "result = sum(entry.amount for entry in entries)":
        before = await request(client, "codellama/stats")
        buf.insert(len(buf.text), ch)
        await buf.complete()
        after = await request(client, "codellama/stats")
        if after["prompt_tokens"] > before["prompt_tokens"]:  # the model ran (not a typed-ahead hit)
            per_keystroke.append(after["prefilled_tokens"] - before["prefilled_tokens"])
    assert len(per_keystroke) >= 10
    assert max(per_keystroke) <= 3, per_keystroke


def predicted_total(engine: LlamaServer) -> float:
    """llama-server's own count of tokens decoded so far (``--metrics``)."""
    metrics = httpx.get(f"{engine.url}/metrics", timeout=10).text
    return sum(float(line.split()[-1]) for line in metrics.splitlines()
               if line.startswith("llamacpp:tokens_predicted_total"))


def engine_idle(engine: LlamaServer, within_s: float = 5.0) -> bool:
    """Whether every slot of ``engine`` stops processing within ``within_s`` (its own ``/slots``)."""
    deadline = time.monotonic() + within_s
    while True:
        slots = httpx.get(f"{engine.url}/slots", timeout=10).json()
        if not any(s.get("is_processing") for s in slots):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def test_a_cancel_mid_answer_frees_the_slot(engine: LlamaServer):
    tok = CodeLlamaTokenizer(EMBEDDED_WEIGHTS / "tokenizer.model")
    backend = connect("llama.cpp", engine.url, tok, "embedded", timeout_ms=60_000)
    backend.check()
    cancel = threading.Event()

    def on_token(ids: list[int]) -> None:
        if len(ids) == 3:
            cancel.set()

    prompt = tok.spm_ids("def f(x):\n    return", "")
    predicted_before = predicted_total(engine)
    result = backend.generate(GenerationRequest(prompt_ids=prompt, max_new_tokens=400, stop_ids=set(),
                                                cancel=cancel, on_token=on_token))
    assert result.stop == "cancelled" and len(result.ids) == 3
    assert engine_idle(engine)  # the engine stopped decoding: nothing runs
    time.sleep(1.0)  # had decoding gone on, the counter would keep growing meanwhile
    assert predicted_total(engine) - predicted_before < 50  # not 400 tokens decoded for an answer nobody reads
    backend.close()


def test_a_cancel_during_a_long_prompt_ends_the_request_before_any_token(engine: LlamaServer):
    """The user typed on while the engine still reads a long prompt (no event has come yet): the request ends at
    once with nothing, so the worker is free for the next keystroke, and the engine drops the request at its first
    token (llama-server finishes a prompt it has started; it notices the closed connection when it writes)."""
    tok = CodeLlamaTokenizer(EMBEDDED_WEIGHTS / "tokenizer.model")
    backend = connect("llama.cpp", engine.url, tok, "embedded", timeout_ms=60_000)
    backend.check()
    text = "\n".join((DEPOT / name).read_text() for name in ("ledger.py", "orders.py"))
    prompt = tok.spm_ids(text * 3, "")[-1990:]  # a fresh prompt near a slot's 2,048 tokens: a long prefill
    cancel = threading.Event()
    predicted_before = predicted_total(engine)
    threading.Timer(0.05, cancel.set).start()  # the next keystroke, while the prompt is being read
    result = backend.generate(GenerationRequest(prompt_ids=prompt, max_new_tokens=400, stop_ids=set(),
                                                cancel=cancel))
    assert result.stop == "cancelled" and result.ids == []
    assert engine_idle(engine)
    assert predicted_total(engine) - predicted_before <= 1  # not 400 tokens decoded for nobody
    after = backend.generate(GenerationRequest(prompt_ids=tok.spm_ids("def f(x):\n    return", ""), max_new_tokens=4,
                                               stop_ids=set()))
    assert after.stop in ("max_tokens", "eos") and after.ids  # the connection pool recovered: the next one answers
    backend.close()


def test_openai_reuse_figures_are_kept_only_when_the_engine_reported_them(engine: LlamaServer):
    """llama-server's OpenAI API reports usage only at the end of a stream: an answer we cut short has no figures,
    and then none are made up (the stats count those prompt tokens apart)."""
    tok = CodeLlamaTokenizer(EMBEDDED_WEIGHTS / "tokenizer.model")
    backend = connect("openai", engine.url, tok, "embedded", timeout_ms=60_000)
    backend.check()
    prompt = tok.spm_ids((DEPOT / "ledger.py").read_text() + "\n\ndef total_of(entries):\n    ", "")
    whole = backend.generate(GenerationRequest(prompt_ids=prompt, max_new_tokens=3, stop_ids=set()))
    assert whole.counts_known and whole.prefilled_tokens + whole.reused_tokens == len(prompt)
    again = backend.generate(GenerationRequest(prompt_ids=prompt, max_new_tokens=3, stop_ids=set()))
    assert again.counts_known and again.reused_tokens >= len(prompt) - 3  # the engine's cache, as it reported
    cut = backend.generate(GenerationRequest(prompt_ids=prompt, max_new_tokens=30, stop_ids=set(),
                                             should_stop=lambda ids: len(ids) >= 1))
    assert cut.stop == "rule" and not cut.counts_known
    backend.close()


async def test_engine_killed_while_typing_then_back(llama_server_bin: Path, embedded_gguf: Path, tmp_path: Path,
                                                    clients: list[LanguageClient]):
    own = launch(llama_server_bin, embedded_gguf, log_dir=tmp_path, parallel=1, ctx=4096)
    port = own.url.rsplit(":", 1)[1]
    client = await start_client({"backend": "llama.cpp", "endpoint": own.url, "requestTimeoutMs": 5000})
    clients.append(client)
    text = (DEPOT / "units.py").read_text() + "\n\ndef convert(value, unit):\n    "
    buf = Buffer(client, (DEPOT / "units.py").as_uri(), text)
    first = text_of(await buf.complete())
    # What is typed while the engine is down must not be what was suggested (typed-ahead would answer it without
    # the engine, rightly): then every request below needs the engine.
    assert first is not None and not first.startswith("x"), first
    stop(own)
    for ch in "x = ":
        buf.insert(len(buf.text), ch)
        assert text_of(await buf.complete()) is None  # empty meanwhile, never an error to the editor
        await asyncio.sleep(0.2)

    def told_down() -> int:
        return len([m for m in client.messages if "cannot reach the engine" in m.message])

    assert told_down() == 1, [m.message for m in client.messages]
    log = (tmp_path / "restarted.log").open("wb")
    proc = subprocess.Popen([str(llama_server_bin), "-m", str(embedded_gguf), "--host", "127.0.0.1", "--port", port,
                             "-c", "4096", "-t", "2"], stdout=log, stderr=subprocess.STDOUT)
    try:
        # While it loads it answers HTTP 503; then, with no restart of ours, suggestions again.  A real line is
        # typed so that every position is one where the model has something to say.
        answers: list[str | None] = []
        deadline = time.monotonic() + 60
        for ch in "value * unit.factor if unit else value":
            if time.monotonic() > deadline or any(answers):
                break
            buf.insert(len(buf.text), ch)
            answers.append(text_of(await buf.complete()))
            await asyncio.sleep(0.5)
        assert any(answers), "completions did not come back after the engine restarted"
        stats = await request(client, "codellama/stats")
        assert stats["errors"] >= 1
        assert told_down() == 1
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
    # A second outage, after the recovery, is told again (once): the first message was not the last word.
    for ch in "\n    ":
        buf.insert(len(buf.text), ch)
        assert text_of(await buf.complete()) is None
    assert told_down() == 2, [m.message for m in client.messages]


async def test_a_bad_key_gets_a_clear_message(start_llama_server: Any, embedded_gguf: Path,
                                              clients: list[LanguageClient]):
    guarded = start_llama_server(embedded_gguf, "--api-key", "the-right-key")
    client = await start_client({"backend": "llama.cpp", "endpoint": guarded.url, "apiKeyEnv": "CODELLAMA_TEST_KEY"},
                                env={"CODELLAMA_TEST_KEY": "a-wrong-key-123"})
    clients.append(client)
    buf = Buffer(client, (DEPOT / "rates.py").as_uri(), (DEPOT / "rates.py").read_text() + "\n\ndef f():\n    ")
    assert text_of(await buf.complete()) is None
    assert text_of(await buf.complete()) is None
    told = [m.message for m in client.messages if "API key" in m.message]
    assert len(told) == 1 and "HTTP 401" in told[0] and "CODELLAMA_TEST_KEY" in told[0]
    everything = " ".join(m.message for m in client.messages) + str(await request(client, "codellama/stats"))
    everything += str(await request(client, "codellama/lastPrompt"))
    assert "a-wrong-key-123" not in everything


async def test_openai_backend_against_v1_completions(engine: LlamaServer, clients: list[LanguageClient]):
    text = (DEPOT / "catalog.py").read_text()
    native = await start_client({"backend": "llama.cpp", "endpoint": engine.url})
    openai = await start_client({"backend": "openai", "endpoint": engine.url})
    clients += [native, openai]
    assert (await request(openai, "codellama/stats"))["model"]["backend"] == "openai"
    positions = cursor_positions(text, 12)
    pairs = []
    for n, p in enumerate(positions):
        uri = (DEPOT / f"catalog_{n}.py").as_uri()
        a, b = Buffer(native, uri, typed_to(text, p)), Buffer(openai, uri, typed_to(text, p))
        pairs.append((text_of(await a.complete(p)), text_of(await b.complete(p))))
    assert sum(x is not None for x, _ in pairs) >= 3, pairs
    assert [(p, x, y) for p, (x, y) in zip(positions, pairs, strict=True) if x != y] == []


# One distinctive parameter name per document: an answer that names another document's parameter came from that
# document's request.
NAMES = ["apples", "bricks", "cables", "drills", "engines", "fabrics", "gloves", "hammers"]


async def test_eight_editors_on_one_engine(engine: LlamaServer, clients: list[LanguageClient]):
    files = sorted(p for p in DEPOT.glob("*.py") if p.stat().st_size > 300)[:8]
    while len(files) < 8:
        files.append(files[len(files) % 4])
    editors = [await start_client({"backend": "llama.cpp", "endpoint": engine.url, "alternatives": 0})
               for _ in range(8)]
    clients += editors
    tails = [f"\n\ndef count_{name}({name}):\n    " for name in NAMES]
    buffers = [Buffer(c, f.as_uri().replace(".py", f"_{i}.py"), f.read_text() + tails[i])
               for i, (c, f) in enumerate(zip(editors, files, strict=True))]

    async def typing(buf: Buffer) -> list[tuple[str, lsp.Position, lsp.InlineCompletionList | None]]:
        seen = []
        for ch in "return ":
            buf.insert(len(buf.text), ch)
            seen.append((buf.text, buf.end(), await buf.complete()))
        return seen

    answers = await asyncio.gather(*(typing(b) for b in buffers))
    assert all(len(a) == 7 for a in answers)  # every request answered
    for seen in answers:  # each answer is for its own request's version: it starts at that version's cursor
        for _, cursor, result in seen:
            for item in (result.items if result is not None else []):
                assert item.range is None or item.range.start == cursor, (item.range, cursor)
    # Each final answer belongs to its own document: one more editor, alone on the engine, asks at each document's
    # final text.  llama.cpp does not promise bit-identical logits across batch compositions (8 slots decoding
    # together vs one alone, prompts cached in other chunks), so a greedy answer may flip at a near-tie.  As seen
    # (3 of 8 in one run, 1 of 8 in another): only the last of 16 tokens, between two pieces that spell the same
    # parameter ("(brick" vs "(bricks", "(en" vs "(eng").  What must hold: the answer equals the solo one or shares
    # all but its tail with it, and never names another document's parameter or equals another document's answer.
    checker = await start_client({"backend": "llama.cpp", "endpoint": engine.url, "alternatives": 0})
    clients.append(checker)
    finals = [text_of(seen[-1][2]) for seen in answers]
    alone = [text_of(await Buffer(checker, buf.uri, buf.text).complete()) for buf in buffers]
    for buf, seen in zip(buffers, answers, strict=True):
        assert seen[-1][0] == buf.text
    assert sum(x is not None and NAMES[i] in x for i, x in enumerate(alone)) >= 4, alone  # the test can tell
    for i, (got, solo) in enumerate(zip(finals, alone, strict=True)):
        others = [n for n in NAMES if n != NAMES[i]]
        assert not any(n in (got or "") for n in others), (i, got)
        assert got == solo or got not in [a for j, a in enumerate(alone) if j != i and a != solo], (i, got, alone)
        if got != solo:
            assert got is not None and solo is not None, (i, got, solo)
            short = min(len(got), len(solo))
            shared = next((k for k in range(short) if got[k] != solo[k]), short)
            assert shared >= 0.75 * short, (i, got, solo)

