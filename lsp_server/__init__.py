"""The protocol edge of codellama-lsp: handlers, server state, settings, stats, scheduling, CLI.

The completion stages live in ``lsp_server.completion``, the code actions in ``lsp_server.actions``, and the
backends that run the model in ``model_backend``.
"""
