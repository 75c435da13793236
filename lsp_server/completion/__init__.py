"""The completion pipeline, one module per stage, in the order a request goes through them.

1. ``documents`` and ``syntax``: the open documents, their text and tree-sitter trees.
2. ``context`` and ``crossfile`` (with ``pysymbols``): the code around the cursor, and other files' definitions.
3. ``prompts``: Code Llama's PSM/SPM prompt as token ids (token healing included).
4. ``core``: ``CompletionCore`` runs a backend on the prompt (``model_backend``), then stages 5 and 6.
5. ``postprocess``: where a suggestion ends, and what of it is worth showing.
6. ``fit_check``: whether the suggestion parses in place; if not, next-best answers are tried.
7. ``typeahead``: the rest of a shown suggestion when the user types what it said.

Nothing here imports LSP types: the server (``lsp_server.server``) and the ``complete`` CLI both call it.
"""
