"""Prompt building: PSM/SPM choice, token healing, rendering for --show-prompt."""

from __future__ import annotations

from lsp_server.completion.prompts import MAX_HEAL_TOKENS, build_prompt, render, strip_healed
from model_backend.tokenization import CodeLlamaTokenizer


def test_psm_mode_is_the_plain_layout(tok: CodeLlamaTokenizer) -> None:
    p = build_prompt(tok, "def f(", "):\n", "psm")
    assert p.mode == "psm" and p.ids == tok.psm_ids("def f(", "):\n") and p.healed == ""


def test_spm_heals_the_word_being_typed(tok: CodeLlamaTokenizer) -> None:
    p = build_prompt(tok, "result = sel", "\n", "auto")
    assert p.mode == "spm"
    assert p.healed == " sel"  # the whole word incl. its space piece is backed off
    assert p.ids == tok.spm_ids("result =", "\n")[: len(p.ids)]
    assert tok.decode_middle(p.ids[p.ids.index(5) + 1:]) + p.healed == " result = sel"


def test_healing_constrains_the_answer_to_spell_the_removed_text(tok: CodeLlamaTokenizer) -> None:
    p = build_prompt(tok, "    ret", "\n", "spm")
    allowed = p.allowed_ids(tok, []) or []
    assert allowed and all(
        tok.piece_text(i).startswith(p.healed) or p.healed.startswith(tok.piece_text(i)) for i in allowed)
    assert tok.encode_nospace(" return")[0] in allowed
    # once the healed text is spelled out, generation is free
    assert p.allowed_ids(tok, tok.encode_nospace(p.healed + " x")) is None
    assert strip_healed(p, p.healed + "urn x") == "urn x"
    assert strip_healed(p, "something else") is None


def test_spm_prompt_only_grows_while_typing(tok: CodeLlamaTokenizer) -> None:
    """The property the KV cache needs: each keystroke keeps almost all earlier prompt tokens."""
    line = "    total = compute_total(items, discount=0.5)"
    prev = build_prompt(tok, "def f(items):\n" + line[:10], "\n    return total\n", "auto").ids
    new_tokens = []
    for end in range(11, len(line)):
        ids = build_prompt(tok, "def f(items):\n" + line[:end], "\n    return total\n", "auto").ids
        common = next((i for i, (a, b) in enumerate(zip(prev, ids, strict=False)) if a != b), min(len(prev), len(ids)))
        new_tokens.append(len(ids) - common)
        prev = ids
    assert max(new_tokens) <= MAX_HEAL_TOKENS  # a finished word's tokens, once
    assert sum(new_tokens) / len(new_tokens) <= 1.5


def test_auto_falls_back_to_psm_when_prefix_ends_in_a_raw_byte(tok: CodeLlamaTokenizer) -> None:
    p = build_prompt(tok, "name = 'Zoë", "'\n", "auto")
    assert p.mode == "psm"


def test_render_shows_control_tokens_and_text(tok: CodeLlamaTokenizer) -> None:
    p = build_prompt(tok, "x = 1", "\ny = 2\n", "psm")
    assert render(tok, p.ids) == "<s>▁<PRE> x = 1▁<SUF>\ny = 2\n▁<MID>"


def test_no_healing_when_the_cursor_starts_a_line(tok: CodeLlamaTokenizer) -> None:
    """No word is being typed there; healing a piece like ':\\n' would let the answer start with a blank line."""
    for prefix in ("def f(x):\n", "    y = x\n\n", '    """\n'):
        p = build_prompt(tok, prefix, "\n    return x\n", "auto")
        assert p.mode == "spm" and p.healed == "" and p.ids == tok.spm_ids(prefix, "\n    return x\n")
