"""``python -m lsp_server``: the same entry point as the ``codellama-lsp`` console script."""

from lsp_server.cli import main

main()
