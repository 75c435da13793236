"""int8 weight *storage* for small checkpoints: half the bytes of fp16, turned back into floats once at load.

Why: the embedded model ships inside the package under a 12 MB cap.  In fp16 that allows about 5.9 M
parameters; in int8 with one fp16 scale per output row, about 11 M.  Only the file changes: the weights are
dequantised to the run dtype when loaded, so the engine, its speed and its memory are those of a float model
of the same shape (a wider model is slower because it is wider, not because of int8).

Format: ``model.int8.safetensors`` beside ``config.json`` (which stays a normal Hugging Face config).  Every
2-D tensor is stored as int8 ``name`` plus fp16 ``name.scale`` (per row: the row's largest magnitude / 127,
rounded to nearest); 1-D tensors (norm weights) stay fp16.  A tied ``lm_head`` is not stored (it is the
embedding).  Metadata: ``{"format": "int8-rowwise"}``.

Convert a folder (to measure what int8 costs a given model):
``python -m model_backend.int8_storage SRC_FOLDER DST_FOLDER``
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

FILE = "model.int8.safetensors"
FORMAT = "int8-rowwise"
FLOAT_FILE = "model.safetensors"


def quantize(state: dict[str, torch.Tensor], skip: frozenset[str] = frozenset()) -> dict[str, torch.Tensor]:
    """int8 rows and fp16 scales for every 2-D tensor, fp16 for the rest; names in ``skip`` are left out."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if name in skip:
            continue
        w = tensor.detach().float().cpu()
        if w.dim() != 2:
            out[name] = w.half().contiguous()
            continue
        scale = (w.abs().amax(dim=1, keepdim=True) / 127).clamp(min=1e-12).half()
        out[name] = torch.round(w / scale.float()).clamp(-127, 127).to(torch.int8).contiguous()
        out[name + ".scale"] = scale.contiguous()
    return out


def dequantize(stored: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The float state dict (in ``dtype``) that ``quantize`` stored."""
    state: dict[str, torch.Tensor] = {}
    for name, tensor in stored.items():
        if name.endswith(".scale"):
            continue
        if tensor.dtype == torch.int8:
            state[name] = (tensor.float() * stored[name + ".scale"].float()).to(dtype)
        else:
            state[name] = tensor.to(dtype)
    return state


def is_int8_folder(folder: Path) -> bool:
    return (folder / FILE).is_file() and not (folder / FLOAT_FILE).is_file()


def save(model: Any, folder: Path) -> None:
    """Write ``model`` (a transformers ``LlamaForCausalLM``) as ``FILE`` into ``folder`` (config not included)."""
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    skip = frozenset({"lm_head.weight"}) if tied else frozenset()
    save_file(quantize(model.state_dict(), skip), str(folder / FILE), metadata={"format": FORMAT})


def load_model(folder: Path, dtype: torch.dtype) -> Any:
    """A ``LlamaForCausalLM`` in ``dtype`` from an int8-stored folder (on CPU; the caller moves it)."""
    from safetensors import safe_open
    from transformers import LlamaConfig, LlamaForCausalLM

    with safe_open(str(folder / FILE), framework="pt") as f:
        fmt = (f.metadata() or {}).get("format")
    if fmt != FORMAT:
        raise ValueError(f"{folder / FILE}: unknown format {fmt!r} (expected {FORMAT!r})")
    config = LlamaConfig.from_pretrained(str(folder))
    model: Any = LlamaForCausalLM(config)
    model = model.to(dtype)
    state = dequantize(load_file(str(folder / FILE)), dtype)
    missing, unexpected = model.load_state_dict(state, strict=False)
    allowed_missing = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if set(missing) - allowed_missing or unexpected:
        raise ValueError(f"{folder / FILE} does not match config.json: missing {missing}, unexpected {unexpected}")
    if config.tie_word_embeddings:
        model.tie_weights()
    return model


def convert(src: Path, dst: Path) -> int:
    """Copy the checkpoint folder ``src`` to ``dst`` with its weights stored as int8; returns dst's bytes."""
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(str(src), dtype=torch.float32, local_files_only=True)
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and f.name != FLOAT_FILE and not f.name.endswith(".safetensors"):
            shutil.copyfile(f, dst / f.name)
    save(model, dst)
    return sum(f.stat().st_size for f in dst.iterdir() if f.is_file())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Store a checkpoint folder's weights as int8 (see module doc).")
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    args = parser.parse_args(argv)
    print(f"{args.dst}: {convert(args.src, args.dst):,} bytes")


if __name__ == "__main__":
    main()
