"""Typing through a suggestion answers from it; anything else goes back to the model."""

from __future__ import annotations

from lsp_server.completion.typeahead import TypeAhead


def test_typed_start_of_the_suggestion_returns_the_rest() -> None:
    t = TypeAhead()
    t.remember("u", "x = fo", "\n", "o(bar)")
    assert t.lookup("u", "x = foo", "\n") == "(bar)"
    assert t.lookup("u", "x = foo(b", "\n") == "ar)"


def test_other_typing_or_an_edit_elsewhere_misses() -> None:
    t = TypeAhead()
    t.remember("u", "x = fo", "\n", "o(bar)")
    assert t.lookup("u", "x = fa", "\n") is None  # typed something else
    assert t.lookup("u", "x = foo", "\nmore\n") is None  # the text after the cursor changed
    assert t.lookup("u", "x = fo", "\n") is None  # nothing typed: ask the model again
    assert t.lookup("u", "x = foo(bar)", "\n") is None  # typed all of it
    assert t.lookup("v", "x = foo", "\n") is None  # another document
    t.forget("u")
    assert t.lookup("u", "x = foo", "\n") is None
