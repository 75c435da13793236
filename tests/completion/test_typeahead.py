"""Typing through a suggestion answers from it; anything else goes back to the model."""

from __future__ import annotations

from lsp_server.completion.typeahead import TypeAhead


def test_typed_start_of_the_suggestion_returns_the_rest() -> None:
    t = TypeAhead()
    t.remember("u", "x = fo", "\n", ["o(bar)"])
    assert t.lookup("u", "x = foo", "\n") == ["(bar)"]
    assert t.lookup("u", "x = foo(b", "\n") == ["ar)"]


def test_other_typing_or_an_edit_elsewhere_misses() -> None:
    t = TypeAhead()
    t.remember("u", "x = fo", "\n", ["o(bar)"])
    assert t.lookup("u", "x = fa", "\n") == []  # typed something else
    assert t.lookup("u", "x = foo", "\nmore\n") == []  # the text after the cursor changed
    assert t.lookup("u", "x = fo", "\n") == []  # nothing typed: ask the model again
    assert t.lookup("u", "x = foo(bar)", "\n") == []  # typed all of it
    assert t.lookup("v", "x = foo", "\n") == []  # another document
    t.forget("u")
    assert t.lookup("u", "x = foo", "\n") == []


def test_typing_the_start_of_any_offered_item_answers_with_its_rest() -> None:
    """The user cycled to the second suggestion and types it: its rest is the answer; typing what several
    items share keeps all of them, in their order."""
    t = TypeAhead()
    t.remember("u", "s.", "\n", ["append(item)", "extend(items)", "pop()", "exit()"])
    assert t.lookup("u", "s.ex", "\n") == ["tend(items)", "it()"]
    assert t.lookup("u", "s.p", "\n") == ["op()"]
    assert t.lookup("u", "s.ext", "\n") == ["end(items)"]
    assert t.lookup("u", "s.z", "\n") == []
