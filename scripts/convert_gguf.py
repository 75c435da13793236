#!/usr/bin/env python3
"""Convert a Hugging Face Code Llama folder to GGUF for llama.cpp's llama-server, with its infilling ids set.

Two steps, both llama.cpp's own scripts from the tree that scripts/install_llama_server.sh unpacks and builds
(run as subprocesses with this interpreter; nothing of llama.cpp is copied here):

1. ``convert_hf_to_gguf.py MODEL --outtype f16|f32 --outfile TMP``;
2. ``gguf-py/gguf/scripts/gguf_new_metadata.py TMP OUT --special-token-by-id fim_pre N ...`` for fim_pre,
   fim_suf, fim_mid and eot.  llama.cpp finds ``▁<PRE>``/``▁<SUF>``/``▁<MID>`` by their text but not ``▁<EOT>``,
   so all four are written explicitly; the ids come from the folder's ``tokenizer.model`` (sentencepiece): the
   embedded model has 3-6, real Code Llama 7B/13B 32007-32010.

A model without the infilling pieces (Code Llama 34B, the Python variants) is refused: llama-server would serve it,
but never correctly for fill-in-the-middle.

Quantization is not done here: quantize the f16 output with llama.cpp's llama-quantize
(``cmake --build TREE/build --target llama-quantize``, then ``llama-quantize OUT.gguf OUT-Q4_K_M.gguf Q4_K_M``).

Example: ``.venv/bin/python scripts/convert_gguf.py --outtype f16 --out build/gguf/embedded-f16.gguf``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import sentencepiece as spm

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO / "model_backend" / "embedded" / "weights"
DEFAULT_LLAMA_CPP = REPO / "build" / "llama.cpp" / "src" / "vendor" / "llama.cpp"

# gguf_new_metadata.py's special-token names -> Code Llama's sentencepiece pieces
FIM_PIECES = {"fim_pre": "▁<PRE>", "fim_suf": "▁<SUF>", "fim_mid": "▁<MID>", "eot": "▁<EOT>"}


class ConvertError(Exception):
    """The model or the llama.cpp tree is unfit for conversion; the message says why and what to do."""


@dataclass(frozen=True)
class FimTokenIds:
    """Infilling ids as read from ``tokenizer.model``."""

    fim_pre: int
    fim_suf: int
    fim_mid: int
    eot: int

    def as_dict(self) -> dict[str, int]:
        return {"fim_pre": self.fim_pre, "fim_suf": self.fim_suf, "fim_mid": self.fim_mid, "eot": self.eot}


def read_fim_ids(model_dir: Path) -> FimTokenIds:
    """The ids of ``▁<PRE>``/``▁<SUF>``/``▁<MID>``/``▁<EOT>`` in ``model_dir/tokenizer.model``, or a refusal."""
    model_file = model_dir / "tokenizer.model"
    if not model_file.is_file():
        raise ConvertError(f"no tokenizer.model in {model_dir}: a Code Llama folder ships one")
    sp = spm.SentencePieceProcessor(model_file=str(model_file))
    ids: dict[str, int] = {}
    missing: list[str] = []
    for name, piece in FIM_PIECES.items():
        i = int(sp.piece_to_id(piece))
        if sp.id_to_piece(i) != piece:  # piece_to_id answers unk_id for an unknown piece
            missing.append(piece)
        ids[name] = i
    if missing:
        raise ConvertError(
            f"{model_file} has no infilling pieces {', '.join(missing)}: this model was trained without "
            "fill-in-the-middle (Code Llama 34B and the Python variants are), so it cannot serve inline completions; "
            "use Code Llama 7B/13B (base or Instruct)"
        )
    return FimTokenIds(**ids)


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
        raise ConvertError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")


def convert(model_dir: Path, out: Path, outtype: str, llama_cpp: Path) -> FimTokenIds:
    """Write ``out`` (GGUF, ``outtype`` f16 or f32) from ``model_dir``; returns the infilling ids it carries."""
    if not (model_dir / "config.json").is_file():
        raise ConvertError(f"{model_dir} is not a Hugging Face model folder (no config.json)")
    fim = read_fim_ids(model_dir)
    converter = llama_cpp / "convert_hf_to_gguf.py"
    new_metadata = llama_cpp / "gguf-py" / "gguf" / "scripts" / "gguf_new_metadata.py"
    for script in (converter, new_metadata):
        if not script.is_file():
            raise ConvertError(f"no {script}: run scripts/install_llama_server.sh (it unpacks the llama.cpp tree)")
    out.parent.mkdir(parents=True, exist_ok=True)
    raw = out.with_name(out.name + ".raw.partial")
    final = out.with_name(out.name + ".partial")
    try:
        _run(
            [sys.executable, str(converter), str(model_dir), "--outtype", outtype, "--outfile", str(raw)],
            "convert_hf_to_gguf.py",
        )
        cmd = [sys.executable, str(new_metadata), str(raw), str(final), "--force"]
        for name, token_id in fim.as_dict().items():
            cmd += ["--special-token-by-id", name, str(token_id)]
        _run(cmd, "gguf_new_metadata.py")
        os.replace(final, out)  # only a complete file ever has the final name
    finally:
        raw.unlink(missing_ok=True)
        final.unlink(missing_ok=True)
    return fim


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(
            "Convert a Hugging Face Code Llama folder to GGUF with llama.cpp's convert_hf_to_gguf.py and set its "
            "infilling token ids (fim_pre, fim_suf, fim_mid, eot) from tokenizer.model."
        ),
        epilog=(
            "No quantization here: quantize with llama.cpp's llama-quantize "
            "(cmake --build TREE/build --target llama-quantize; llama-quantize IN.gguf OUT.gguf Q4_K_M)."
        ),
    )
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="model folder (default: the embedded model)")
    parser.add_argument("--outtype", choices=["f16", "f32"], default="f16", help="tensor type (default: f16)")
    parser.add_argument("--out", type=Path, help="output file (default: build/gguf/<model folder>-<outtype>.gguf)")
    parser.add_argument(
        "--llama-cpp",
        type=Path,
        default=DEFAULT_LLAMA_CPP,
        help="llama.cpp source tree (default: the one scripts/install_llama_server.sh unpacks)",
    )
    args = parser.parse_args(argv)
    model_dir: Path = args.model.resolve()
    out: Path = args.out or REPO / "build" / "gguf" / f"{model_dir.name}-{args.outtype}.gguf"
    try:
        fim = convert(model_dir, out, args.outtype, args.llama_cpp.resolve())
    except ConvertError as e:
        print(f"convert_gguf: {e}", file=sys.stderr)
        return 1
    ids = " ".join(f"{k}={v}" for k, v in fim.as_dict().items())
    print(f"wrote {out} ({args.outtype}; {ids})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
