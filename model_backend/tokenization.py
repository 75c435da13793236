"""Code Llama tokenisation, exactly as Meta's reference does it.

Why sentencepiece directly and not the Hugging Face tokenizer: every Code Llama checkpoint ships
``tokenizer.model``, the reference encodes with it, and the HF fast tokenizer in transformers 5.x
differs on runs of leading whitespace (indentation!) and turns the literal text ``▁<PRE>`` in a user's
file into the control token.  sentencepiece gives the reference's ids and never emits a control piece
for user text.

The three operations the infilling format needs (see ``docs/prompt-format.md``):

* ``encode(s)``: sentencepiece with its implicit leading space (the prefix in PSM and SPM);
* ``encode_nospace(s)``: a sentinel character is encoded in front of ``s`` and its tokens dropped, so
  no ``▁`` is invented at the start of ``s`` (the suffix, and the middle in training);
* ``decode_middle(ids)``: a sentinel token is decoded in front and its text dropped, so a real leading
  space of the middle survives (plain ``decode`` strips it).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import sentencepiece as spm

from model_backend.errors import ServiceError

FIM_PIECES = {"prefix": "▁<PRE>", "suffix": "▁<SUF>", "middle": "▁<MID>", "eot": "▁<EOT>"}
SENTINEL_CHAR = "☺"  # the reference's choice; any char works that does not merge with its neighbours


class TokenizerError(ServiceError):
    """The tokenizer files are missing or lack what infilling needs."""


@dataclass(frozen=True)
class FimIds:
    """Ids of Code Llama's infilling control tokens."""

    prefix: int
    suffix: int
    middle: int
    eot: int


class CodeLlamaTokenizer:
    """Encode/decode in Code Llama's infilling format on top of a sentencepiece model."""

    def __init__(self, model_file: Path) -> None:
        if not model_file.is_file():
            raise TokenizerError(
                f"no tokenizer.model in {model_file.parent}: Code Llama checkpoints ship a sentencepiece "
                "tokenizer.model next to config.json; copy it there"
            )
        self.sp = spm.SentencePieceProcessor(model_file=str(model_file))
        self.vocab_size: int = self.sp.vocab_size()
        self.bos_id: int = self.sp.bos_id()
        self.eos_id: int = self.sp.eos_id()
        self.fim: FimIds | None = self._find_fim_ids()
        self._sentinel_ids = self.sp.encode(SENTINEL_CHAR)
        self._sentinel_piece = self._plain_piece_id()
        self._pieces_sorted, self._ids_sorted = self._piece_index()

    # -- special tokens -----------------------------------------------------------------------
    def _find_fim_ids(self) -> FimIds | None:
        """The infilling ids, or None for a model trained without them (34B, Python variants)."""
        ids = {name: self.sp.piece_to_id(piece) for name, piece in FIM_PIECES.items()}
        unk = self.sp.unk_id()
        if any(i == unk for i in ids.values()):
            return None
        return FimIds(**ids)

    def special_ids(self) -> set[int]:
        """Ids that must never appear as text in a suggestion."""
        ids = {self.bos_id, self.eos_id, self.sp.unk_id()}
        if self.fim is not None:
            ids |= {self.fim.prefix, self.fim.suffix, self.fim.middle, self.fim.eot}
        return {i for i in ids if i >= 0}

    def stop_ids(self) -> set[int]:
        """Generation ends on EOT as well as EOS (the model writes EOT after a middle)."""
        ids = {self.eos_id}
        if self.fim is not None:
            ids.add(self.fim.eot)
        return ids

    # -- encoding -----------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """sentencepiece ids with the implicit leading space; no BOS/EOS."""
        return _encode(self.sp, text)

    def encode_nospace(self, text: str) -> list[int]:
        """Ids of ``text`` without an invented leading ``▁`` (reference: ``encode_infilling``)."""
        if not text:
            return []
        ids = _encode(self.sp, SENTINEL_CHAR + text)
        n = len(self._sentinel_ids)
        if ids[:n] != self._sentinel_ids:  # the sentinel merged with the text: never seen, but be exact
            raise TokenizerError(f"sentinel {SENTINEL_CHAR!r} merged with text {text[:20]!r}")
        return list(ids[n:])

    # -- infilling layouts (reference: ``infilling_prompt_tokens``) -----------------------------
    def psm_ids(self, prefix: str, suffix: str) -> list[int]:
        """``[BOS, PRE] + enc(prefix) + [SUF] + enc_nospace(suffix) + [MID]``; the model writes the middle."""
        fim = self.require_fim()
        return [self.bos_id, fim.prefix, *self.encode(prefix), fim.suffix, *self.encode_nospace(suffix), fim.middle]

    def spm_ids(self, prefix: str, suffix: str) -> list[int]:
        """``[BOS, PRE, SUF] + enc_nospace(suffix) + [MID] + enc(prefix)``; the model continues the prefix."""
        fim = self.require_fim()
        return [self.bos_id, fim.prefix, fim.suffix, *self.encode_nospace(suffix), fim.middle, *self.encode(prefix)]

    def require_fim(self) -> FimIds:
        """The infilling ids, or a clear refusal for a left-to-right-only model."""
        if self.fim is None:
            raise TokenizerError(
                "this model has no infilling tokens (▁<PRE>/▁<SUF>/▁<MID>/▁<EOT>): Code Llama 34B and the "
                "Python variants were trained without fill-in-the-middle; use Code Llama 7B/13B (base or Instruct)"
            )
        return self.fim

    def count(self, text: str) -> int:
        """Token count of a line or window (for budgets); cached because lines repeat per keystroke."""
        return _count_cached(self.sp, text)

    # -- decoding -----------------------------------------------------------------------------
    def decode_middle(self, ids: list[int]) -> str:
        """Text of generated ids, keeping a real leading space (reference: ``decode_infilling``).

        Special ids are dropped first, so no control token can leak into a suggestion.
        """
        special = self.special_ids()
        ids = [i for i in ids if i not in special]
        if not ids:
            return ""
        text: str = self.sp.decode([self._sentinel_piece, *ids])
        return text[len(self.sp.id_to_piece(self._sentinel_piece)):]

    def piece_text(self, token_id: int) -> str:
        """The text a single piece stands for (``▁`` as a space; byte pieces as their char if ASCII)."""
        piece: str = self.sp.id_to_piece(token_id)
        if self.sp.is_byte(token_id):
            value = int(piece[3:-1], 16)
            return chr(value) if value < 0x80 else ""
        return piece.replace("▁", " ")

    # -- token healing ------------------------------------------------------------------------
    def ids_starting_with(self, text: str) -> list[int]:
        """Ids of all ordinary pieces whose text starts with ``text`` (for constrained first tokens)."""
        lo = bisect.bisect_left(self._pieces_sorted, text)
        hi = bisect.bisect_left(self._pieces_sorted, text + "\U0010ffff")
        return self._ids_sorted[lo:hi]

    def ids_equal_to(self, text: str) -> list[int]:
        """Ids of ordinary pieces whose text is exactly ``text``."""
        lo = bisect.bisect_left(self._pieces_sorted, text)
        hi = bisect.bisect_right(self._pieces_sorted, text)
        return self._ids_sorted[lo:hi]

    def _piece_index(self) -> tuple[list[str], list[int]]:
        special = self.special_ids()
        pairs = sorted(
            (self.piece_text(i), i)
            for i in range(self.vocab_size)
            if i not in special and not self.sp.is_control(i) and not self.sp.is_unknown(i)
        )
        pairs = [(text, i) for text, i in pairs if text]
        return [text for text, _ in pairs], [i for _, i in pairs]

    def _plain_piece_id(self) -> int:
        """A one-character piece without ``▁`` to decode in front of a middle (any letter will do)."""
        for ch in "abcdefghijklmnopqrstuvwxyz":
            i = self.sp.piece_to_id(ch)
            if i != self.sp.unk_id():
                return int(i)
        raise TokenizerError("tokenizer has no single-letter piece to use as a decoding sentinel")


def _encode(sp: spm.SentencePieceProcessor, text: str) -> list[int]:
    """``sp.encode``, tolerating lone surrogates (they can arrive over JSON): each becomes U+FFFD."""
    try:
        return list(sp.encode(text))
    except (RuntimeError, UnicodeEncodeError):
        return list(sp.encode("".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)))


@lru_cache(maxsize=65536)
def _count_cached(sp: spm.SentencePieceProcessor, text: str) -> int:
    return len(_encode(sp, text))


def load_tokenizer(folder: Path) -> CodeLlamaTokenizer:
    """The tokenizer of a checkpoint folder (``tokenizer.model`` inside it)."""
    return CodeLlamaTokenizer(folder / "tokenizer.model")
