"""Cross-file context over real LSP: a workspace folder with two files; the other file's definition in the prompt."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types as lsp
from pytest_lsp import LanguageClient

from tests.lsp.editor import CAPABILITIES, SERVER, Buffer, as_dict, request

RATES = '''"""Freight rates."""

MIN_CHARGE_CENTS = 499


def tariff_cents(billable: int, zone: str, express: bool = False) -> int:
    """The tariff for ``billable`` grams into ``zone``."""
    return max(MIN_CHARGE_CENTS, billable // 10)
'''
ORDERS = '''from depot.rates import tariff_cents


def freight(order):
    grams = order.grams
    return '''
SIGNATURE = "def tariff_cents(billable: int, zone: str, express: bool = False) -> int:"
ROOT = Path(tempfile.gettempdir()) / f"codellama-ws-{os.getpid()}"  # created by the fixture, removed after


@pytest_lsp.fixture(config=SERVER, scope="module")
async def client(lsp_client: LanguageClient):  # type: ignore[no-untyped-def]
    (ROOT / "depot").mkdir(parents=True, exist_ok=True)
    (ROOT / "depot" / "__init__.py").write_text("")
    (ROOT / "depot" / "rates.py").write_text(RATES)
    folder = lsp.WorkspaceFolder(uri=ROOT.as_uri(), name="ws")
    await lsp_client.initialize_session(lsp.InitializeParams(
        capabilities=CAPABILITIES, workspace_folders=[folder], root_uri=ROOT.as_uri(),
        initialization_options={"timeBudgetMs": 5000, "crossFileContext": True}))
    yield
    await lsp_client.shutdown_session()
    shutil.rmtree(ROOT, ignore_errors=True)


async def prompt_after_completing(client: LanguageClient, name: str) -> dict:
    buf = Buffer(client, (ROOT / "depot" / name).as_uri(), ORDERS)  # rates.py is only on disk
    assert await buf.complete() is not None
    return as_dict(await request(client, "codellama/lastPrompt"))


@pytest.mark.asyncio(loop_scope="module")
async def test_other_files_definition_is_in_the_prompt_when_on(client: LanguageClient) -> None:
    prompt = await prompt_after_completing(client, "orders_on.py")
    text = prompt["text"]
    assert f"# Path: depot/rates.py\n{SIGNATURE}\n" in text
    assert "# Path: depot/orders_on.py\nfrom depot.rates import tariff_cents" in text
    assert "return max(MIN_CHARGE_CENTS" not in text  # signatures and docstrings, not bodies
    assert prompt["crossfile"] == ["depot/rates.py:6"]


@pytest.mark.asyncio(loop_scope="module")
async def test_absent_when_off(client: LanguageClient) -> None:
    client.workspace_did_change_configuration(lsp.DidChangeConfigurationParams(settings={"crossFileContext": False}))
    prompt = await prompt_after_completing(client, "orders_off.py")
    assert SIGNATURE not in prompt["text"] and "# Path:" not in prompt["text"]
    assert prompt["crossfile"] == []
    assert "from depot.rates import tariff_cents" in prompt["text"]  # the local file is still there
