"""int8 weight storage: half the file, and the model still predicts what the fp16 one does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from model_backend import int8_storage
from model_backend.embedded import WEIGHTS_DIR
from model_backend.loading import LoadSpec, ModelLoadError, load
from model_backend.tokenization import load_tokenizer


def test_rows_round_trip_within_half_a_step() -> None:
    torch.manual_seed(0)
    state = {"w": torch.randn(16, 64) * torch.logspace(-3, 1, 16).unsqueeze(1), "norm": torch.rand(64)}
    stored = int8_storage.quantize(state)
    assert stored["w"].dtype == torch.int8 and stored["norm"].dtype == torch.float16 and "norm.scale" not in stored
    back = int8_storage.dequantize(stored, torch.float32)
    step = stored["w.scale"].float()  # per row: rows of very different magnitudes keep their own precision
    assert bool(((back["w"] - state["w"]).abs() <= step * 0.5 + state["w"].abs() * 2e-3).all())
    assert torch.allclose(back["norm"], state["norm"], atol=1e-3)


def shipped_model() -> Any:
    return load(LoadSpec(None, dtype="float32")).model


def agreement(model: Any, reference: Any) -> float:
    """Share of teacher-forced next-token choices along real code on which two models agree."""
    tok = load_tokenizer(WEIGHTS_DIR)
    text = (Path(__file__).parents[2] / "benchmarks" / "data" / "inventory.py").read_text()[:3000]
    ids = torch.tensor([[tok.bos_id, *tok.encode(text)]])
    with torch.inference_mode():
        a = reference(ids).logits[0].argmax(-1)
        b = model.float()(ids).logits[0].argmax(-1)
    return float((a == b).float().mean())


@pytest.fixture(scope="module")
def int8_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dst = tmp_path_factory.mktemp("int8") / "weights"
    int8_storage.convert(WEIGHTS_DIR, dst)
    return dst


def test_embedded_model_in_int8_is_half_the_size_and_predicts_the_same_tokens(int8_folder: Path) -> None:
    fp16_bytes = (WEIGHTS_DIR / "model.safetensors").stat().st_size
    int8_bytes = (int8_folder / int8_storage.FILE).stat().st_size
    assert int8_bytes < 0.55 * fp16_bytes
    assert not (int8_folder / "model.safetensors").exists() and (int8_folder / "tokenizer.model").exists()

    small = load(LoadSpec(str(int8_folder), dtype="float32"))
    agree = agreement(small.model, shipped_model())
    assert agree > 0.95, agree
    assert small.model.lm_head.weight.data_ptr() == small.model.model.embed_tokens.weight.data_ptr()  # still tied


def test_int8_folder_cannot_be_loaded_as_nf4(int8_folder: Path) -> None:
    with pytest.raises(ModelLoadError, match="int8"):
        load(LoadSpec(str(int8_folder), quantization="nf4", device="cpu"))


def stdlib_corpus(folder: Path, files: int = 40) -> Path:
    """A small training corpus in ``corpus.py``'s format: the first standard-library modules by name.

    The training runs below use ``--workers 0`` (samples built in-process): a forked data worker inside this
    long-lived, multi-threaded pytest process once hung with its parent."""
    import json
    import lzma
    import sysconfig

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    corpus = folder / "corpus.jsonl.xz"
    with lzma.open(corpus, "wt", encoding="utf-8") as fh:
        for path in sorted(stdlib.glob("*.py"))[:files]:
            fh.write(json.dumps({"path": path.name, "text": path.read_text(errors="replace")}) + "\n")
    return corpus


def test_training_script_saves_int8_that_the_server_loads_and_completes_with(tmp_path: Path) -> None:
    """A few seconds of real training on standard-library files, saved with ``--storage int8``."""
    import json

    from lsp_server.completion.core import CompletionCore
    from lsp_server.completion.documents import Document
    from lsp_server.settings import Settings
    from model_backend.embedded import train

    corpus = stdlib_corpus(tmp_path)
    out = tmp_path / "weights"
    train.main(["--corpus", str(corpus), "--out", str(out), "--device", "cpu", "--minutes", "0.2",
                "--seq-len", "128", "--batch-size", "2", "--workers", "0", "--hidden", "64", "--layers", "2",
                "--heads", "2", "--kv-heads", "1", "--ffn", "128", "--val-pct", "10", "--val-rows", "2",
                "--storage", "int8"])
    assert (out / int8_storage.FILE).is_file() and not (out / "model.safetensors").exists()
    info = json.loads((out / "training.json").read_text())
    assert info["status"] == "final" and info["settings"]["storage"] == "int8"

    core = CompletionCore(Settings(model=str(out), max_new_tokens=8, time_budget_ms=60_000))
    core.load()
    text = "def add(a, b):\n    return "
    outcome = core.generate(core.prepare(Document("file:///t.py", "python", 1, text), len(text)))
    assert outcome.result.ids  # the model ran and produced tokens (what they say after seconds of training is noise)


def test_training_can_start_from_the_shipped_model_and_keeps_what_it_knew(tmp_path: Path) -> None:
    """``--init``: further training starts from a saved model (its shape, its weights), not from noise."""
    import json

    from model_backend.embedded import train

    out = tmp_path / "weights"
    train.main(["--corpus", str(stdlib_corpus(tmp_path)), "--out", str(out), "--device", "cpu", "--minutes", "0.2",
                "--seq-len", "256", "--batch-size", "1", "--workers", "0", "--lr", "1e-6", "--val-pct", "10",
                "--val-rows", "1", "--init", str(WEIGHTS_DIR)])
    info = json.loads((out / "training.json").read_text())
    shipped = json.loads((WEIGHTS_DIR / "config.json").read_text())
    assert info["status"] == "final" and info["steps"] >= 1
    shape = (info["settings"]["hidden"], info["settings"]["layers"], info["settings"]["ffn"])
    assert shape == (shipped["hidden_size"], shipped["num_hidden_layers"], shipped["intermediate_size"])
    assert agreement(load(LoadSpec(str(out), device="cpu")).model, shipped_model()) > 0.95
