"""LSP side of codellama-lsp: documents, context, prompts, post-processing and the protocol handlers."""
