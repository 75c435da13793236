"""Shared fixtures: the embedded tokenizer and a small random Llama (for engine-only tests)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from model_backend.embedded import WEIGHTS_DIR
from model_backend.tokenization import CodeLlamaTokenizer, load_tokenizer


@pytest.fixture(scope="session")
def tok() -> CodeLlamaTokenizer:
    return load_tokenizer(WEIGHTS_DIR)
