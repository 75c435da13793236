"""Model loading: local folders and the local hub cache only, and every failure names its fix."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import huggingface_hub.constants
import pytest
import sentencepiece as spm
import torch

from lsp_server.completion.prompts import build_prompt
from model_backend.embedded import WEIGHTS_DIR
from model_backend.loading import LoadSpec, ModelLoadError, load, pick_device, pick_dtype, resolve_path
from model_backend.tokenization import CodeLlamaTokenizer, TokenizerError


def test_default_is_the_embedded_model_and_it_loads() -> None:
    loaded = load(LoadSpec())
    assert loaded.name == "embedded" and loaded.path == WEIGHTS_DIR
    assert loaded.device.type == "cpu" and loaded.dtype == torch.float16  # stored fp16 → fp16 weights on CPU
    assert sum(f.stat().st_size for f in WEIGHTS_DIR.iterdir()) <= 12_000_000


@pytest.mark.parametrize(("model", "message"), [
    ("/no/such/folder", "does not exist"),
    ("someorg/not-downloaded-model", "never downloads"),
])
def test_missing_models_are_refused_with_the_fix(model: str, message: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelLoadError, match=message):
        resolve_path(model)


def test_a_hub_id_in_the_local_cache_is_found_without_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "hub" / "models--acme--tiny-llama"
    snapshot = repo / "snapshots" / "0123abc"
    shutil.copytree(WEIGHTS_DIR, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abc")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert resolve_path("acme/tiny-llama") == snapshot


def test_a_file_or_a_non_llama_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="is a file"):
        resolve_path(str(tmp_path / "weights.bin"))
    folder = tmp_path / "gpt"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ModelLoadError, match="Llama-architecture"):
        load(LoadSpec(model=str(folder)))
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        load(LoadSpec(model=str(tmp_path)))


def test_a_checkpoint_without_tokenizer_model_names_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    shutil.copytree(WEIGHTS_DIR, folder)
    (folder / "tokenizer.model").unlink()
    with pytest.raises(ModelLoadError, match=r"tokenizer\.model"):
        load(LoadSpec(model=str(folder)))


def test_nf4_and_cuda_need_a_gpu() -> None:
    if torch.cuda.is_available():
        pytest.skip("this check is about machines without a GPU")
    with pytest.raises(ModelLoadError, match="needs a CUDA GPU"):
        pick_device("auto", "nf4")
    with pytest.raises(ModelLoadError, match="no CUDA GPU"):
        pick_device("cuda", "none")


def test_dtype_choice() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert pick_dtype("auto", cpu, "float16") == torch.float16
    assert pick_dtype("auto", cpu, "float32") == torch.float32
    assert pick_dtype("auto", cpu, "bfloat16") == torch.float32
    assert pick_dtype("auto", cuda, "float16") == torch.bfloat16
    assert pick_dtype("float32", cpu, "float16") == torch.float32


def test_a_model_without_infilling_tokens_is_refused_for_infilling(tmp_path: Path) -> None:
    """Like Code Llama 34B and the Python variants: no ▁<PRE>/▁<SUF>/▁<MID>/▁<EOT> pieces."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(["def f(x):\n    return x + 1\n"] * 50),
                                   model_writer=model, vocab_size=290, model_type="bpe", byte_fallback=True,
                                   minloglevel=2)
    (tmp_path / "tokenizer.model").write_bytes(model.getvalue())
    tok = CodeLlamaTokenizer(tmp_path / "tokenizer.model")
    assert tok.fim is None
    with pytest.raises(TokenizerError, match=r"34B and the\s+Python variants"):
        build_prompt(tok, "def f(", "):\n", "auto")
