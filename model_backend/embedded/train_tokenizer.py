"""Train the embedded model's sentencepiece tokenizer in Code Llama's format.

Why these settings: Code Llama's tokenizer is a sentencepiece BPE with byte fallback, digits split,
whitespace kept verbatim (``remove_extra_whitespaces=False``, identity normalisation) and the implicit
leading space (``add_dummy_prefix``) that the reference's ``encode_infilling`` works around.  The four
infilling tokens ``▁<PRE> ▁<SUF> ▁<MID> ▁<EOT>`` are *control* symbols: text typed by a user can never
turn into them.  Source text is the Python standard library (PSF licence), fed whole-file in chunks so
that newlines and indentation runs can become pieces.

Run: ``python -m model_backend.embedded.train_tokenizer [--vocab-size 4096] [--out DIR]``
"""

from __future__ import annotations

import argparse
import io
import random
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import sentencepiece as spm

from model_backend.embedded import WEIGHTS_DIR

FIM_PIECES = ("▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>")
CHUNK_CHARS = 4000  # below sentencepiece's max_sentence_length (bytes) for mostly-ASCII code


def stdlib_files() -> list[Path]:
    """The standard library's own ``.py`` files, tests excluded (PSF licence)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = [
        p
        for p in sorted(root.rglob("*.py"))
        if "site-packages" not in p.parts and not any(part.startswith("test") for part in p.parts[len(root.parts):])
    ]
    return files


def chunks(files: list[Path], seed: int) -> Iterator[str]:
    """Whole-file text cut into chunks at line boundaries, in a seeded random order."""
    order = list(files)
    random.Random(seed).shuffle(order)
    for path in order:
        text = path.read_text(encoding="utf-8", errors="replace")
        buf: list[str] = []
        size = 0
        for line in text.splitlines(keepends=True):
            if size + len(line) > CHUNK_CHARS and buf:
                yield "".join(buf)
                buf, size = [], 0
            buf.append(line[:CHUNK_CHARS])
            size += len(buf[-1])
        if buf:
            yield "".join(buf)


def train(out_dir: Path, vocab_size: int, seed: int) -> Path:
    """Train and write ``tokenizer.model`` into ``out_dir``; returns its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=chunks(stdlib_files(), seed),
        model_writer=model,
        model_type="bpe",
        vocab_size=vocab_size,
        character_coverage=0.9995,
        byte_fallback=True,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        add_dummy_prefix=True,
        control_symbols=list(FIM_PIECES),
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        max_sentence_length=16384,
        input_sentence_size=200_000,
        shuffle_input_sentence=True,
        seed_sentencepiece_size=1_000_000,
        num_threads=2,
        minloglevel=2,
    )
    path = out_dir / "tokenizer.model"
    path.write_bytes(model.getvalue())
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    args = parser.parse_args()
    path = train(args.out, args.vocab_size, args.seed)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
