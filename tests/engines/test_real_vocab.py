"""Our tokenizer and prompt builder on a real Code Llama vocabulary, rebuilt from data llama.cpp ships (no download).

llama.cpp's tree has ``models/ggml-vocab-llama-spm.gguf``: Llama 2's 32,000-piece sentencepiece vocabulary (pieces,
scores, types), with reference tokenizations ``.inp``/``.out`` made by the Hugging Face Llama tokenizer.  Code Llama
7B/13B extend exactly that vocabulary to 32,016 pieces, with ``▁<PRE>``/``▁<SUF>``/``▁<MID>``/``▁<EOT>`` at
32007-32010 (shared/docs/CODELLAMA.md).  The test rebuilds a sentencepiece ``tokenizer.model`` from the GGUF arrays,
extends it that way, and loads it with the project's ``CodeLlamaTokenizer``.

CODELLAMA.md fixes only the size (32016) and the four infilling ids; the other twelve added ids (32000-32006,
32011-32015) are placeholders here, made CONTROL pieces so that no text can ever encode to them and they cannot
change any tokenization below.
"""

from __future__ import annotations

import functools
import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from gguf import GGUFReader

from lsp_server.completion.prompts import build_prompt
from model_backend.tokenization import CodeLlamaTokenizer

# sentencepiece's generated protobuf classes have no type information: typed as Any on purpose.
sp_pb2: Any = importlib.import_module("sentencepiece.sentencepiece_model_pb2")

SEPARATOR = "\n__ggml_vocab_test__\n"  # the .inp format of llama.cpp's tests/test-tokenizer-0
CODELLAMA_VOCAB = 32016
FIM = {"▁<PRE>": 32007, "▁<SUF>": 32008, "▁<MID>": 32009, "▁<EOT>": 32010}
BOS, EOS = 1, 2

Cases = list[tuple[str, list[int]]]


def _vocab_file(tree: Path) -> Path:
    return tree / "models" / "ggml-vocab-llama-spm.gguf"


def reference_cases(tree: Path) -> Cases:
    """(text, ids) pairs: inputs split on the marker line (the file ends with one), one line of ids per input."""
    vocab = _vocab_file(tree)
    with Path(f"{vocab}.inp").open(encoding="utf-8", newline="") as f:  # keep "\r" and "\r\n" as they are
        raw = f.read()
    texts = raw.split(SEPARATOR)
    assert texts[-1] == "", "the .inp file ends with a marker line"
    texts = texts[:-1]
    lines = Path(f"{vocab}.out").read_text(encoding="utf-8").split("\n")
    assert lines[-1] == ""
    ids = [[int(x) for x in line.split()] for line in lines[:-1]]
    assert len(texts) == len(ids), "one line of ids per input"
    return list(zip(texts, ids, strict=True))


@functools.cache
def llama2_vocabulary(tree: Path) -> tuple[list[str], list[float], list[int]]:
    """Pieces, scores and token types of Llama 2's vocabulary, read from the GGUF once (GGUFReader takes seconds)."""
    reader = GGUFReader(_vocab_file(tree))
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    scores = reader.fields["tokenizer.ggml.scores"].contents()
    types = reader.fields["tokenizer.ggml.token_type"].contents()
    assert reader.fields["tokenizer.ggml.model"].contents() == "llama"  # sentencepiece, not BPE-from-GPT2
    assert len(tokens) == len(scores) == len(types) == 32000
    return tokens, scores, types


def codellama_model_proto(tree: Path, fim: bool = True) -> Any:
    """Llama 2's sentencepiece model rebuilt from the GGUF, extended to Code Llama's 32016 pieces (with ``fim``)."""
    tokens, scores, types = llama2_vocabulary(tree)
    proto = sp_pb2.ModelProto()
    for piece, score, kind in zip(tokens, scores, types, strict=True):
        # GGUF's token types use sentencepiece's numbering: 1 normal, 2 unknown, 3 control, 6 byte, ...
        proto.pieces.add(piece=piece, score=score, type=kind)
    for i in range(32000, CODELLAMA_VOCAB if fim else 32000):
        name = next((p for p, j in FIM.items() if j == i), f"<codellama_placeholder_{i}>")
        proto.pieces.add(piece=name, score=0.0, type=sp_pb2.ModelProto.SentencePiece.CONTROL)

    # Llama 2's specs (its tokenizer.model): BPE with byte fallback, digits split, the dummy prefix, and the
    # identity normalizer that keeps runs of spaces (indentation) as they are.
    trainer = proto.trainer_spec
    trainer.model_type = sp_pb2.TrainerSpec.BPE
    trainer.vocab_size = len(proto.pieces)
    trainer.byte_fallback = True
    trainer.split_digits = True
    trainer.allow_whitespace_only_pieces = True
    trainer.max_sentencepiece_length = 16
    trainer.unk_id, trainer.bos_id, trainer.eos_id, trainer.pad_id = 0, BOS, EOS, -1
    normalizer = proto.normalizer_spec
    normalizer.name = "identity"
    normalizer.add_dummy_prefix = True
    normalizer.remove_extra_whitespaces = False
    normalizer.escape_whitespaces = True
    return proto


@pytest.fixture(scope="module")
def cases(llama_cpp_tree: Path) -> Cases:
    return reference_cases(llama_cpp_tree)


@pytest.fixture(scope="module")
def real_tok(llama_cpp_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> CodeLlamaTokenizer:
    path = tmp_path_factory.mktemp("codellama-vocab") / "tokenizer.model"
    path.write_bytes(codellama_model_proto(llama_cpp_tree).SerializeToString())
    return CodeLlamaTokenizer(path)


def test_encode_reproduces_reference_tokenizations(real_tok: CodeLlamaTokenizer, cases: Cases) -> None:
    # Every case, exactly: indentation runs, tabs and newlines (byte fallback), digits split one by one, emoji and
    # Khmer as raw bytes, the empty string, and leading spaces (dummy prefix "▁" + "▁Hello").
    assert len(cases) >= 40
    assert any(text == "" for text, _ in cases) and any("\t" in text for text, _ in cases)
    mismatches = [(text, real_tok.encode(text), ids) for text, ids in cases if real_tok.encode(text) != ids]
    assert mismatches == []


def test_fim_ids_and_stop_ids(real_tok: CodeLlamaTokenizer) -> None:
    assert real_tok.vocab_size == CODELLAMA_VOCAB
    assert (real_tok.bos_id, real_tok.eos_id) == (BOS, EOS)
    fim = real_tok.require_fim()
    assert (fim.prefix, fim.suffix, fim.middle, fim.eot) == (32007, 32008, 32009, 32010)
    assert real_tok.stop_ids() == {EOS, 32010}  # generation ends on EOT, not only on EOS
    assert {32007, 32008, 32009, 32010} <= real_tok.special_ids()
    # A user's file that contains the infilling markers as text must not forge them.
    forged = real_tok.encode("x = '▁<PRE> <SUF> <MID> <EOT>'") + real_tok.encode_nospace("<EOT>")
    assert not set(forged) & {32007, 32008, 32009, 32010}
    # The middle decodes with its real leading space kept (plain decode would drop it).
    assert real_tok.decode_middle([*real_tok.encode_nospace(" return x"), 32010]) == " return x"


def test_prompt_layouts_token_for_token(real_tok: CodeLlamaTokenizer, cases: Cases) -> None:
    ref = dict(cases)
    pre, suf, mid = 32007, 32008, 32009
    prefix = "    Hello\n    Hello"  # a reference case: [268 "▁▁▁▁", 15043 "▁Hello", 13 "\n", 1678, 15043]
    prefix_ids = ref[prefix]
    # enc_nospace(" " + s) tokenizes the same "▁s..." string that enc(s) does with its dummy prefix, so the
    # suffix's expected ids are a reference case too.
    suffix = " Hello, world!"
    suffix_ids = ref["Hello, world!"]
    assert suffix_ids == [15043, 29892, 3186, 29991]

    psm = build_prompt(real_tok, prefix, suffix, "psm")
    assert psm.mode == "psm"
    assert psm.ids == [BOS, pre, *prefix_ids, suf, *suffix_ids, mid]

    # SPM ends with the prefix; the cursor sits after the word "Hello", so token healing backs off "▁Hello"
    # and the answer must start with " Hello" again.
    spm = build_prompt(real_tok, prefix, suffix, "spm")
    assert spm.mode == "spm"
    assert spm.ids == [BOS, pre, suf, *suffix_ids, mid, *prefix_ids[:-1]]
    assert spm.healed == " Hello"
    assert build_prompt(real_tok, prefix, suffix, "auto").ids == spm.ids

    # At the start of a line nothing is healed: the full SPM layout, newline (byte piece 13) last.
    line_start = "    Hello\n"
    assert ref["    Hello"] == [268, 15043]
    spm_line = build_prompt(real_tok, line_start, suffix, "spm")
    assert spm_line.ids == [BOS, pre, suf, *suffix_ids, mid, 268, 15043, 13]
    assert spm_line.healed == ""

    # An empty suffix leaves SUF directly before MID (no "▁" invented for nothing).
    assert build_prompt(real_tok, prefix, "", "psm").ids == [BOS, pre, *prefix_ids, suf, mid]


def test_converter_refuses_a_model_without_infilling_pieces(llama_cpp_tree: Path, tmp_path: Path) -> None:
    # Code Llama 34B and the Python variants keep Llama 2's 32000 pieces: no ▁<PRE>/▁<SUF>/▁<MID>/▁<EOT>.
    model = tmp_path / "codellama-python-like"
    model.mkdir()
    (model / "tokenizer.model").write_bytes(codellama_model_proto(llama_cpp_tree, fim=False).SerializeToString())
    (model / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "vocab_size": 32000}))
    out = tmp_path / "out.gguf"
    script = Path(__file__).resolve().parents[2] / "scripts" / "convert_gguf.py"
    cmd = [sys.executable, str(script), "--model", str(model), "--out", str(out), "--llama-cpp", str(llama_cpp_tree)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 1
    assert "no infilling pieces ▁<PRE>, ▁<SUF>, ▁<MID>, ▁<EOT>" in proc.stderr
    assert "fill-in-the-middle" in proc.stderr
    assert not out.exists()
