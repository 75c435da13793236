"""Code Llama infilling prompts as token ids: PSM, SPM, and SPM with token healing.

Why SPM by default: in SPM the prompt ends with the prefix, so typing at the cursor only appends tokens
and the engine's cached keys/values stay valid (one or two new tokens per keystroke); the paper also
reports SPM ahead on single-line infilling.  Its weakness is a cursor inside a token ("def fo|"): the
prompt would end in a token the model rarely saw continued.  Token healing fixes it: drop the prefix's
last token and force the first generated token to start with the dropped text; the suggestion then has
that text removed again.  Where healing cannot apply (the last token is a raw byte) ``auto`` uses PSM.
At the start of a line there is no word to heal: backing off a piece like ``):\n`` only let the answer
start with a blank line (a dropped suggestion) or a glued ``\n#`` comment, so the prompt stays as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from model_backend.tokenization import CodeLlamaTokenizer

FimMode = Literal["psm", "spm"]


WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
MAX_HEAL_TOKENS = 4


@dataclass(frozen=True)
class Prompt:
    """Token ids for the model and how to read its answer."""

    ids: list[int]
    mode: FimMode
    healed: str = ""  # text dropped from the prefix's end; the answer must start with it, and it is cut off again

    def allowed_ids(self, tok: CodeLlamaTokenizer, generated: list[int]) -> list[int] | None:
        """Token healing: ids allowed next so that the answer keeps spelling out ``healed`` (None = any)."""
        if not self.healed:
            return None
        text = tok.decode_middle(generated) if generated else ""
        if len(text) >= len(self.healed):
            return None
        rest = self.healed[len(text):]
        allowed = list(tok.ids_starting_with(rest))
        for end in range(1, len(rest)):  # pieces that spell out only part of the rest
            allowed.extend(tok.ids_equal_to(rest[:end]))
        return allowed


def build_prompt(tok: CodeLlamaTokenizer, prefix: str, suffix: str, fim_mode: str = "auto") -> Prompt:
    """The prompt for infilling between ``prefix`` and ``suffix`` (``fim_mode``: auto | psm | spm)."""
    if fim_mode == "psm":
        return Prompt(tok.psm_ids(prefix, suffix), "psm")
    ids = tok.spm_ids(prefix, suffix)
    healed = _heal(tok, ids)
    if healed is not None:
        return healed
    if fim_mode == "spm":
        return Prompt(ids, "spm")
    return Prompt(tok.psm_ids(prefix, suffix), "psm")


def _heal(tok: CodeLlamaTokenizer, ids: list[int]) -> Prompt | None:
    """SPM with the prefix's trailing word backed off (at most a few tokens), or None where it cannot be.

    The back-off covers the whole word being typed ("▁f" + "o" for ``def fo``) so that the model can pick
    the piece it would have used for the full word ("▁foo").
    """
    middle = tok.require_fim().middle
    start = ids.index(middle) + 1
    if len(ids) - start < 2:
        return Prompt(ids, "spm")  # empty or one-token prefix: nothing to heal, the dummy space stays
    k, text = 1, tok.piece_text(ids[-1])
    if not text:
        return None  # a raw byte piece: no text to constrain on
    if text.endswith("\n"):
        return Prompt(ids, "spm")  # the cursor starts a line: no word is being typed, nothing to heal
    while k < MAX_HEAL_TOKENS and len(ids) - start > k + 1 and text[0] in WORD_CHARS:
        before = tok.piece_text(ids[-k - 1])
        if not before or before[-1] not in WORD_CHARS:
            break
        k, text = k + 1, before + text
    return Prompt(ids[:-k], "spm", healed=text)


def strip_healed(prompt: Prompt, text: str) -> str | None:
    """The suggestion proper: the generated text minus the healed prefix (None if it does not start with it)."""
    if not prompt.healed:
        return text
    if not text.startswith(prompt.healed):
        return None
    return text[len(prompt.healed):]


def render(tok: CodeLlamaTokenizer, ids: list[int]) -> str:
    """Human-readable prompt for ``--show-prompt``: control tokens as their pieces, text decoded."""
    special = tok.special_ids()
    parts: list[str] = []
    run: list[int] = []
    for i in ids:
        if i in special:
            if run:
                parts.append(tok.decode_middle(run))
                run = []
            parts.append(tok.sp.id_to_piece(i))
        else:
            run.append(i)
    if run:
        parts.append(tok.decode_middle(run))
    return "".join(parts)
