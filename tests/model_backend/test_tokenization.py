"""Code Llama's infilling layouts, checked against the reference's formulas applied to raw sentencepiece."""

from __future__ import annotations

import sentencepiece as spm

from model_backend.tokenization import CodeLlamaTokenizer


def ref_encode_infilling(sp: spm.SentencePieceProcessor, s: str) -> list[int]:
    """The reference's ``encode_infilling``: encode a sentinel + s and drop the sentinel's tokens."""
    n = len(sp.encode("☺"))
    return list(sp.encode("☺" + s))[n:]


def test_special_ids_are_the_fim_pieces(tok: CodeLlamaTokenizer) -> None:
    fim = tok.require_fim()
    assert [tok.sp.id_to_piece(i) for i in (fim.prefix, fim.suffix, fim.middle, fim.eot)] == [
        "▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>"]
    # pinned: our tokenizer puts them right after <unk> <s> </s>, BOS is 1, EOS is 2
    assert (tok.bos_id, tok.eos_id, fim.prefix, fim.suffix, fim.middle, fim.eot) == (1, 2, 3, 4, 5, 6)
    assert tok.stop_ids() == {2, 6}


def test_psm_layout_matches_reference(tok: CodeLlamaTokenizer) -> None:
    prefix, suffix = "def add(a, b):\n    return ", "\n\nprint(add(1, 2))\n"
    sp = tok.sp
    expected = [1, 3, *sp.encode(prefix), 4, *ref_encode_infilling(sp, suffix), 5]
    assert tok.psm_ids(prefix, suffix) == expected


def test_spm_layout_matches_reference(tok: CodeLlamaTokenizer) -> None:
    prefix, suffix = "x = [1, 2", "]\ny = 3\n"
    sp = tok.sp
    expected = [1, 3, 4, *ref_encode_infilling(sp, suffix), 5, *sp.encode(prefix)]
    assert tok.spm_ids(prefix, suffix) == expected


def test_suffix_gets_no_invented_leading_space(tok: CodeLlamaTokenizer) -> None:
    ids = tok.encode_nospace("return x")
    assert not tok.sp.id_to_piece(ids[0]).startswith("▁")
    # while plain encode invents one (the implicit dummy prefix)
    assert tok.sp.id_to_piece(tok.encode("return x")[0]).startswith("▁")
    # a real leading space is kept
    assert tok.decode_middle(tok.encode_nospace(" return x")) == " return x"


def test_decode_middle_keeps_leading_space_and_indentation(tok: CodeLlamaTokenizer) -> None:
    for text in [" foo(bar)", "    return 1\n", "\tx", "é😀 中文"]:
        ids = tok.encode_nospace(text)
        assert tok.decode_middle(ids) == text
    # plain sentencepiece decode loses the leading space: the bug decode_middle exists for
    assert tok.sp.decode(tok.encode_nospace(" foo")) == "foo"


def test_special_ids_never_decode_to_text(tok: CodeLlamaTokenizer) -> None:
    fim = tok.require_fim()
    ids = [*tok.encode_nospace("a = 1"), fim.eot, fim.middle, tok.eos_id]
    assert tok.decode_middle(ids) == "a = 1"


def test_user_text_cannot_forge_control_tokens(tok: CodeLlamaTokenizer) -> None:
    ids = tok.encode("x = '▁<PRE> <SUF> <MID> <EOT>'")
    assert not set(ids) & tok.special_ids()


def test_ids_starting_with_finds_completions_of_a_word(tok: CodeLlamaTokenizer) -> None:
    ids = tok.ids_starting_with("ret")
    texts = {tok.piece_text(i) for i in ids}
    assert "return" in texts
    assert all(t.startswith("ret") for t in texts)


def test_lone_surrogates_do_not_break_encoding(tok: CodeLlamaTokenizer) -> None:
    ids = tok.encode_nospace("x = '\udcff'")
    assert tok.decode_middle(ids) == "x = '\ufffd'"
    assert tok.count("a\ud800b") == len(tok.encode("a\ufffdb"))
