"""Settings, progress and model-load failures over real LSP."""

from __future__ import annotations

import asyncio

import pytest
import pytest_lsp
from lsprotocol import types as lsp
from pytest_lsp import LanguageClient

from tests.lsp.editor import CAPABILITIES, SERVER, Buffer, as_dict, request


@pytest_lsp.fixture(config=SERVER)
async def client(lsp_client: LanguageClient):  # type: ignore[no-untyped-def]
    yield
    await lsp_client.shutdown_session()


async def wait_ready(client: LanguageClient) -> dict:
    for _ in range(300):
        stats = as_dict(await request(client, "codellama/stats"))
        if stats["model_state"] != "loading":
            return stats
        await asyncio.sleep(0.1)
    raise AssertionError("model never finished loading")


@pytest.mark.asyncio
async def test_model_loading_reports_progress(client: LanguageClient) -> None:
    await client.initialize_session(lsp.InitializeParams(capabilities=CAPABILITIES))
    stats = await wait_ready(client)
    assert stats["model_state"] == "ready"
    await asyncio.sleep(0.2)
    reports = [p for values in client.progress_reports.values() for p in values]
    kinds = [getattr(v, "kind", None) for v in reports]
    assert kinds[0] == "begin" and kinds[-1] == "end"
    assert "ready" in reports[-1].message


@pytest.mark.asyncio
async def test_invalid_settings_are_reported_and_defaults_kept(client: LanguageClient) -> None:
    await client.initialize_session(lsp.InitializeParams(
        capabilities=CAPABILITIES, initialization_options={"maxNewTokens": -3, "fimMode": "sideways"}))
    await wait_ready(client)
    text = " ".join(m.message for m in client.messages)
    assert "maxNewTokens" in text and "fimMode" in text and "psm" in text
    buf = Buffer(client, "file:///work/ok.py", "def add(a, b):\n    return a")
    assert await buf.complete() is not None


@pytest.mark.asyncio
async def test_settings_change_applies_without_restart(client: LanguageClient) -> None:
    await client.initialize_session(lsp.InitializeParams(capabilities=CAPABILITIES))
    await wait_ready(client)
    client.workspace_did_change_configuration(lsp.DidChangeConfigurationParams(
        settings={"codellama": {"fimMode": "psm", "prefixTokens": 64}}))
    buf = Buffer(client, "file:///work/cfg.py", "".join(f"x{i} = {i}\n" for i in range(200)) + "y = x1")
    await buf.complete()
    prompt = as_dict(await request(client, "codellama/lastPrompt"))
    assert prompt["mode"] == "psm"
    assert len(prompt["ids"]) < 200  # the 64-token prefix budget applies


@pytest.mark.asyncio
async def test_bad_model_path_gives_a_clear_message_and_the_server_stays_up(client: LanguageClient) -> None:
    await client.initialize_session(lsp.InitializeParams(
        capabilities=CAPABILITIES, initialization_options={"model": "/no/such/model"}))
    stats = await wait_ready(client)
    assert stats["model_state"] == "error" and "does not exist" in stats["model_error"]
    assert any("/no/such/model" in m.message and m.type == lsp.MessageType.Error for m in client.messages)
    buf = Buffer(client, "file:///work/x.py", "def f():\n    return 1")
    result = await buf.complete()
    assert result is not None and not result.items
    # fixing the setting loads the model without a restart
    client.workspace_did_change_configuration(lsp.DidChangeConfigurationParams(settings={"model": None}))
    await asyncio.sleep(0.1)
    assert (await wait_ready(client))["model_state"] == "ready"


@pytest.mark.asyncio
async def test_nf4_without_a_gpu_names_the_fix(client: LanguageClient) -> None:
    await client.initialize_session(lsp.InitializeParams(
        capabilities=CAPABILITIES, initialization_options={"quantization": "nf4"}))
    stats = await wait_ready(client)
    assert stats["model_state"] == "error"
    assert "nf4" in stats["model_error"] and ("CUDA" in stats["model_error"] or "bitsandbytes" in stats["model_error"])
