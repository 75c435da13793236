"""The fit check: would accepting a suggestion put a syntax error at the cursor or on the next code line?"""

from __future__ import annotations

from lsp_server.completion.documents import Document
from lsp_server.completion.fit_check import MAX_REGION_CHARS, MAX_REGION_LINES, for_cursor

PY = """import os


def total(items):
    result = 0
    for item in items:
{hole}
        result += item
    return result


def other():
    return 1
"""


def check_at_hole(source: str, language: str = "python"):  # type: ignore[no-untyped-def]
    text = source.replace("{hole}", "")
    offset = source.index("{hole}")
    return for_cursor(Document("file:///t", language, 1, text), offset)


def test_python_statement_in_a_body_fits_a_header_without_its_own_body_breaks() -> None:
    check = check_at_hole(PY)
    assert not check.breaks("        item = int(item)")
    assert check.breaks("        if item is None:")  # `result += item` below is not indented under it


def test_python_header_without_a_body_breaks() -> None:
    source = PY.replace("{hole}\n        result += item", "        result += item\n{hole}")
    check = check_at_hole(source)
    assert check.breaks("    if result > 10:")  # the next line, `return result`, is not indented under it
    assert not check.breaks("    result = abs(result)")


def test_python_plain_line_above_a_deeper_line_breaks() -> None:
    source = PY.replace("    for item in items:\n{hole}", "{hole}")
    check = check_at_hole(source)
    assert check.breaks("    result = 1")  # `result += item` below is indented deeper: needs a header
    assert not check.breaks("    for item in items:")


def test_python_unclosed_bracket_and_bad_indentation_break() -> None:
    check = check_at_hole(PY)
    assert check.breaks("        item = int(item")
    assert check.breaks("          item = 1")  # unindent that matches no outer level on the next line


def test_python_error_elsewhere_does_not_block_a_suggestion() -> None:
    broken_above = PY.replace("    result = 0", "    result = (0")  # the user is mid-edit further up
    assert not check_at_hole(broken_above).breaks("        item = int(item)")
    broken_below = PY.replace("    return 1", "    return (1")  # another function, below the region
    assert not check_at_hole(broken_below).breaks("        item = int(item)")
    assert check_at_hole(broken_below).breaks("        item = (1")


def test_python_region_is_the_top_level_chunk_and_bounded() -> None:
    check = check_at_hole(PY)
    # From the function's header to the next top-level statement, which stands in as `pass` (a header left
    # without a body above it would be an error there).
    assert check.before.startswith("def total(items):") and check.after.endswith("return result\n\n\npass\n")
    body = "".join(f"    x{i} = {i}\n" for i in range(2 * MAX_REGION_LINES))
    long_source = "def f():\n" + body + "{hole}\n" + body
    check = check_at_hole(long_source)
    assert check.before.startswith("if True:\n    x400 = 400\n")  # the window, made to compile on its own
    assert check.after.count("\n") <= MAX_REGION_LINES + 1
    assert not check.breaks("    y = 1") and check.breaks("    y = (1")


def test_tree_sitter_language_blames_only_new_errors() -> None:
    js = "function f(a) {\n  const b = a + 1;\n{hole}\n  return b;\n}\n"
    check = check_at_hole(js, "javascript")
    assert check.kind == "tree-sitter"
    assert not check.breaks("  console.log(b);")
    assert check.breaks("  console.log(b;")
    already = "function f(a) {\n  const b = (a + 1;\n{hole}\n  return b;\n}\n"
    assert not check_at_hole(already, "javascript").breaks("  console.log(b);")


def test_language_without_grammar_always_fits() -> None:
    check = check_at_hole("text {hole} more", "plaintext")
    assert check.kind == "none" and not check.breaks("((((")


def test_python_region_runs_through_top_level_else() -> None:
    source = "if os.name == 'nt':\n    sep = ';'\nelse:\n{hole}\nprint(sep)\n"
    check = check_at_hole(source)
    assert check.before.startswith("if os.name") and not check.breaks("    sep = ':'")
    assert check.breaks("sep = ':'")  # `else:` needs an indented body


def test_python_header_at_the_end_of_the_file_waits_for_its_body() -> None:
    text = "import os\n\n\ndef walk(root):\n    for name in os.listdir"
    check = for_cursor(Document("file:///t", "python", 1, text), len(text))
    assert not check.breaks("(root):")  # the body is not written yet: no error for a header without one
    assert check.breaks("(root:")
    last_def = "def walk(root):\n{hole}"  # a blank line: what is suggested there must stand on its own
    assert check_at_hole(last_def).breaks("    if not root:")
    assert not check_at_hole(last_def).breaks("    if not root:\n        return []")
    assert not check_at_hole(last_def).breaks("    return os.listdir(root)")


def test_python_line_being_typed_is_not_blamed_for_what_was_already_open() -> None:
    text = 'def walk(root):\n    """Walk the tree'
    check = for_cursor(Document("file:///t", "python", 1, text), len(text))
    assert not check.breaks(" below root")  # the docstring was open before the suggestion, and still is
    assert not check.breaks(' below root."""')
    text = "def walk(root):\n    return os.path.join(root\n\n\ndef other():\n    pass\n"
    offset = text.rindex("(root") + len("(root")
    check = for_cursor(Document("file:///t", "python", 1, text), offset)
    assert not check.breaks(", 'x'")  # the call was unclosed before the suggestion
    assert not check.breaks(", 'x')")
    text = "def walk(root):\n    total = \n    return total +\n"  # a broken line below, already broken before
    check = for_cursor(Document("file:///t", "python", 1, text), text.index("= ") + 2)
    assert not check.breaks("0")
    assert not check.breaks("(\n        0)")  # two rows: the old error below moves down with it, still not blamed


def test_a_huge_region_is_not_checked() -> None:
    minified = "var a = [" + "1, " * MAX_REGION_CHARS + "];\n{hole}\n"
    check = check_at_hole(minified, "javascript")
    assert check.kind == "none" and not check.breaks("foo(")  # parsing megabytes per answer would stall typing
