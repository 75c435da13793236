"""Golden tests for post-processing: each rule with a hand-written expected suggestion."""

from __future__ import annotations

import pytest

from lsp_server.completion.context import CompletionContext
from lsp_server.completion.postprocess import finalize, stop_reason, strip_special_tokens


def ctx(
    mode: str = "line",
    line_prefix: str = "",
    line_suffix: str = "",
    after: str = "",
    indent: str = "",
) -> CompletionContext:
    """A context whose suffix is ``line_suffix`` followed by the lines ``after``."""
    assert mode in ("line", "block")
    return CompletionContext(
        prefix="def f():\n" + line_prefix,
        suffix=line_suffix + after,
        mode=mode,  # type: ignore[arg-type]
        line_prefix=line_prefix,
        line_suffix=line_suffix,
        indent=indent,
        language="python",
        prefix_start_line=0,
        suffix_end_line=0,
    )


LINE = ctx(line_prefix="    x = ", indent="    ")
BLOCK = ctx("block", line_prefix="    ", indent="    ", after="\n\ndef g():\n    pass\n")


# -- leaked control tokens -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("compute(a)<EOT>", "compute(a)"),
        ("compute(a) <EOT> junk after", "compute(a)"),
        ("compute(a)▁<EOT>", "compute(a)"),
        ("compute(a)</s>x", "compute(a)"),
        ("<MID>compute(a)", "compute(a)"),
        ("▁<MID>compute(a)", "compute(a)"),
        ("<s>compute(a)", "compute(a)"),
        ("compute(a)<SUF>\n    return x", "compute(a)"),
        ("compute(a)<PRE> def f", "compute(a)"),
    ],
)
def test_special_tokens_are_stripped(raw: str, expected: str) -> None:
    assert finalize(raw, LINE) == expected


def test_strip_special_tokens_keeps_everything_else() -> None:
    assert strip_special_tokens("  a <b> c") == "  a <b> c"
    assert strip_special_tokens("<EOT>") == ""
    assert strip_special_tokens("<s><s>x</s>junk") == "x"  # BOS then EOS leaked
    assert strip_special_tokens("<p><s>old</s> new</p>") == "<p><s>old</s> new</p>"  # HTML strikethrough


# -- line mode -------------------------------------------------------------------------------------
def test_line_mode_ends_at_the_first_newline() -> None:
    assert finalize("compute(a)\n    y = 2\n", LINE) == "compute(a)"
    assert finalize("compute(a)\r\n    y = 2", LINE) == "compute(a)"


def test_line_mode_drops_a_suggestion_starting_with_a_newline() -> None:
    assert finalize("\n    y = 2", ctx(line_prefix="    x = 1", indent="    ")) is None


def test_line_mode_trailing_spaces_go_unless_text_follows() -> None:
    assert finalize("compute(a)   ", LINE) == "compute(a)"
    assert finalize("a + ", ctx(line_prefix="x = ", line_suffix="b")) == "a + "


# -- block mode ------------------------------------------------------------------------------------
def test_block_mode_stops_at_a_dedented_line() -> None:
    raw = "total = 0\n    for v in xs:\n        total += v\n    return total\n\ndef g():\n    pass\n"
    assert finalize(raw, BLOCK) == "total = 0\n    for v in xs:\n        total += v\n    return total"


def test_block_mode_first_line_is_exempt_from_the_dedent_rule() -> None:
    at_col0 = ctx("block", line_prefix="", indent="    ")
    assert finalize("    return 1\nprint(f())", at_col0) == "    return 1"


def test_block_mode_drops_trailing_blank_lines() -> None:
    assert finalize("a = 1\n    b = 2\n\n    \n", BLOCK) == "a = 1\n    b = 2"


def test_block_mode_brace_language_excludes_the_closing_brace() -> None:
    js = ctx("block", line_prefix="  ", indent="  ", after="\n}\n")
    assert finalize("const x = 1;\n  return x;\n}\n\nfunction g() {", js) == "const x = 1;\n  return x;"


def test_block_mode_keeps_inner_closing_braces() -> None:
    js = ctx("block", line_prefix="  ", indent="  ", after="\n}\n")
    raw = "if (a) {\n    return 1;\n  }\n  return 0;\n}"
    assert finalize(raw, js) == "if (a) {\n    return 1;\n  }\n  return 0;"


# -- never re-insert what follows the cursor ----------------------------------------------------------
@pytest.mark.parametrize(
    ("line_prefix", "line_suffix", "raw", "expected"),
    [
        ("print(", ")", "a, b)", "a, b"),  # the rest of the line, exactly
        ("def f(", "):", "x, y):", "x, y"),
        ('d["', '"]', 'key"]', "key"),
        ("f([", ")]", "x)", "x"),  # a closing run the rest of the line starts with
        ("f(", ")", "g(x)", "g(x)"),  # that ")" closes the suggestion's own "(": kept
        ("f(", ")", "g(x))", "g(x)"),
        ("x = [", "]", "1, 2, 3]", "1, 2, 3"),
        ('s = "', '"', "it's\"", "it's"),
    ],
)
def test_duplicate_tail_of_the_cursor_line_is_stripped(
    line_prefix: str, line_suffix: str, raw: str, expected: str
) -> None:
    assert finalize(raw, ctx(line_prefix=line_prefix, line_suffix=line_suffix)) == expected


def test_block_mode_cuts_at_the_next_line_of_the_suffix() -> None:
    c = ctx("block", line_prefix="    ", indent="    ", after="\n    return total\n")
    assert finalize("total = sum(xs)\n    return total\n", c) == "total = sum(xs)"


def test_block_mode_drops_a_repetition_of_the_suffixs_first_lines() -> None:
    c = ctx("block", line_prefix="    ", indent="    ", after="\n    b = 2\n    c = 3\n")
    assert finalize("a = 1\n    b = 2\n    c = 3", c) == "a = 1"
    assert finalize("b = 2\n    c = 3", c) is None  # nothing new at all


def test_line_mode_repeating_the_next_line_is_dropped() -> None:
    c = ctx(line_prefix="    ", indent="    ", after="\n    y = 2\n")
    assert finalize("y = 2", c) is None
    assert finalize("z = 3", c) == "z = 3"


# -- nothing worth showing -------------------------------------------------------------------------
@pytest.mark.parametrize("raw", ["", "   ", "\n\n", "<EOT>", "})", ")", ");", "  ]"])
def test_empty_whitespace_and_lone_closers_are_dropped(raw: str) -> None:
    assert finalize(raw, LINE) is None
    assert finalize(raw, BLOCK) is None


# -- leading whitespace --------------------------------------------------------------------------------
def test_a_real_leading_space_survives() -> None:
    assert finalize(" x", ctx(line_prefix="    return")) == " x"
    assert finalize("\tx = 1", ctx("block", indent="\t")) == "\tx = 1"


# -- early stop ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "c", "stop"),
    [
        ("compute(a", LINE, False),
        ("compute(a)\n", LINE, True),
        ("compute(a)<EOT>", LINE, True),
        ("\n", LINE, True),
        ("total = 0\n    for v in xs:\n", BLOCK, False),
        ("total = 0\n    return total\n\n", BLOCK, False),
        ("total = 0\n    return total\nd", BLOCK, True),  # dedent known from its first character
        ("total = 0\n\nclass", BLOCK, True),
    ],
)
def test_stop_reason(text: str, c: CompletionContext, stop: bool) -> None:
    assert stop_reason(text, c) is stop


def test_stop_reason_on_a_repeated_suffix_line() -> None:
    c = ctx("block", line_prefix="    ", indent="    ", after="\n    return total\n")
    assert stop_reason("total = 1\n    return tot", c) is False
    assert stop_reason("total = 1\n    return total\n", c) is True


def test_finalize_agrees_with_where_stop_reason_stops() -> None:
    raw = "total = 0\n    return total\n\ndef g():\n    pass\n"
    for end in range(len(raw) + 1):
        if stop_reason(raw[:end], BLOCK):
            assert finalize(raw[:end], BLOCK) == finalize(raw, BLOCK)
            break
    else:
        pytest.fail("never stopped")


def test_a_rewrite_of_the_rest_of_the_line_is_dropped() -> None:
    c = ctx(line_prefix="    with open(", line_suffix="path) as f:", indent="    ")
    assert finalize('path, "rb") as f:', c) is None  # inserted, ") as f:" would appear twice
    assert finalize("path", ctx(line_prefix="    with open(", line_suffix=") as f:", indent="    ")) == "path"


def test_mid_line_with_code_after_the_cursor_needs_a_middle_the_model_closed() -> None:
    c = ctx(line_prefix="    fou", line_suffix="nd.append(x)", indent="    ")
    assert finalize('nd.append(f"{x}")', c, ended_by_model=False) is None  # ran to the newline: a rewrite
    assert finalize("nd_items", c, ended_by_model=True) == "nd_items"
    # only closers after the cursor: a suggestion that ran to the newline is fine
    assert finalize("x + 1)", ctx(line_prefix="print(", line_suffix=")"), ended_by_model=False) == "x + 1"


@pytest.mark.parametrize("raw", ["onacci(n, 1, 1, 1, 1, 1, 1", "f(a, a, a, a, a, a, a, a, a", "self.self.self.self."])
def test_a_suggestion_stuck_in_a_loop_is_dropped_and_stops_decoding(raw: str) -> None:
    assert finalize(raw, LINE) is None
    assert stop_reason(raw, LINE)


@pytest.mark.parametrize("raw", ["range(1, 10)", "'=' * 40", "a == b == c", "[1, 2, 3, 4]", "[0, 0, 0, 0, 0, 0, 0, 0]"])
def test_ordinary_repetition_is_not_a_loop(raw: str) -> None:
    assert finalize(raw, LINE) == raw
    assert not stop_reason(raw, LINE)
