"""Loading a checkpoint: find it on disk (never download), pick device and dtype, load weights and tokenizer.

Every failure becomes a ``ModelLoadError`` whose message names the fix, because the server shows it to the
user as is and keeps running.
"""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from model_backend import int8_storage
from model_backend.embedded import WEIGHTS_DIR
from model_backend.errors import ServiceError
from model_backend.tokenization import CodeLlamaTokenizer, TokenizerError, load_tokenizer

Progress = Callable[[str, int], None]  # (message, percent)


class ModelLoadError(ServiceError):
    """The model could not be loaded; the message says how to fix it."""


@dataclass(frozen=True)
class LoadSpec:
    """What to load and how (the model part of the user's settings)."""

    model: str | None = None
    quantization: str = "none"
    device: str = "auto"
    dtype: str = "auto"
    threads: int = 0


@dataclass
class LoadedModel:
    """A model ready for the engine, with what the server reports about it."""

    model: Any  # a transformers LlamaForCausalLM
    tokenizer: CodeLlamaTokenizer
    name: str
    path: Path
    device: torch.device
    dtype: torch.dtype
    quantization: str
    load_ms: float


def resolve_path(model: str | None) -> Path:
    """A folder for ``model``: None = embedded; an existing folder; or a hub id from the local cache."""
    if not model:
        return WEIGHTS_DIR
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ModelLoadError(f"model {model!r} is a file; give the checkpoint folder (with config.json) instead")
    if "/" in model and not model.startswith((".", "/", "~")):
        cached = _from_hub_cache(model)
        if cached is not None:
            return cached
        raise ModelLoadError(
            f"model {model!r} is neither a folder nor in the local Hugging Face cache; this server never downloads. "
            f"Fetch it once with `huggingface-cli download {model}` (or point the setting at a folder)"
        )
    raise ModelLoadError(f"model folder {model!r} does not exist; check the `model` setting")


def _from_hub_cache(repo_id: str) -> Path | None:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:
        return None


def pick_device(device: str, quantization: str) -> torch.device:
    """``auto`` = CUDA when present; NF4 needs CUDA and bitsandbytes."""
    has_cuda = torch.cuda.is_available()
    if device == "cuda" and not has_cuda:
        raise ModelLoadError("device 'cuda' requested but PyTorch sees no CUDA GPU; set device to 'cpu' or 'auto'")
    chosen = torch.device("cuda" if device == "cuda" or (device == "auto" and has_cuda) else "cpu")
    if quantization == "nf4":
        if chosen.type != "cuda":
            raise ModelLoadError(
                "quantization 'nf4' needs a CUDA GPU (bitsandbytes 4-bit kernels); set quantization to 'none' on CPU"
            )
        if importlib.util.find_spec("bitsandbytes") is None:
            raise ModelLoadError(
                "quantization 'nf4' needs bitsandbytes: `pip install bitsandbytes` in the server's venv")
    return chosen


def pick_dtype(dtype: str, device: torch.device, stored: str | None = None) -> torch.dtype:
    """``auto``: bf16 on CUDA; on CPU the checkpoint's float16 if it is stored so, else float32.

    Why float16 on CPU: decoding one token is memory-bound there and the engine keeps activations in
    float32, so half-size weights cut the per-token time (measured: benchmarks/README.md, typing replay).  bfloat16 is
    not chosen automatically: this CPU's bf16 matmuls were slower than float32 ones.
    """
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16
        return torch.float16 if stored == "float16" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def load(spec: LoadSpec, progress: Progress | None = None) -> LoadedModel:
    """Load tokenizer and weights; report progress in a few steps."""
    report = progress or (lambda message, percent: None)
    t0 = time.perf_counter()
    report("locating model", 5)
    path = resolve_path(spec.model)
    config = _read_config(path)
    if spec.quantization == "nf4" and int8_storage.is_int8_folder(path):
        raise ModelLoadError(f"{path} stores int8 weights (a small model for the CPU): set quantization to none")
    device = pick_device(spec.device, spec.quantization)
    dtype = pick_dtype(spec.dtype, device, config.get("dtype") or config.get("torch_dtype"))
    if spec.threads:
        torch.set_num_threads(spec.threads)
    report("loading tokenizer", 15)
    try:
        tokenizer = load_tokenizer(path)
    except TokenizerError as exc:
        raise ModelLoadError(str(exc)) from exc
    if tokenizer.vocab_size > int(config.get("vocab_size", 0)):
        raise ModelLoadError(
            f"tokenizer has {tokenizer.vocab_size} pieces but the model only {config.get('vocab_size')}: "
            "tokenizer.model does not belong to this checkpoint"
        )
    report(f"loading weights ({device.type}, {str(dtype).removeprefix('torch.')}, {spec.quantization})", 30)
    model = _load_weights(path, device, dtype, spec.quantization)
    name = "embedded" if path == WEIGHTS_DIR else (spec.model or str(path))
    return LoadedModel(model, tokenizer, name, path, device, dtype, spec.quantization,
                       (time.perf_counter() - t0) * 1e3)


def _read_config(path: Path) -> dict[str, Any]:
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelLoadError(f"{path} has no config.json: not a Hugging Face checkpoint folder")
    try:
        config: dict[str, Any] = json.loads(config_file.read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {config_file}: {exc}") from exc
    if config.get("model_type") != "llama":
        raise ModelLoadError(
            f"{path} holds a {config.get('model_type')!r} model; "
            "this server runs Llama-architecture models (Code Llama)"
        )
    return config


def _load_weights(path: Path, device: torch.device, dtype: torch.dtype, quantization: str) -> Any:
    from transformers import LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # stderr is our log, not a terminal

    kwargs: dict[str, Any] = {"dtype": dtype, "local_files_only": True}
    if quantization == "nf4":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype,
        )
        kwargs["device_map"] = {"": device.index or 0}
    try:
        if int8_storage.is_int8_folder(path):
            model: Any = int8_storage.load_model(path, dtype)
        else:
            model = LlamaForCausalLM.from_pretrained(str(path), **kwargs)
    except Exception as exc:
        raise ModelLoadError(f"loading weights from {path} failed: {exc}") from exc
    if quantization != "nf4":
        model = model.to(device)
    return model.eval()
