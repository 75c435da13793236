"""Model side of codellama-lsp: loading, tokenisation, the generation engine and the embedded model."""
