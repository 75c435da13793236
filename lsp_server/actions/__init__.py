"""Code actions (explain, refactor, add docstring) through Code Llama - Instruct.

``offers`` decides what to offer where and turns an answer into a checked edit; ``instruct`` builds the
Instruct prompt (turn markers in user code neutralised); ``assistant`` runs it on the model.  The protocol
conversation around them (progress, cancellation, ``workspace/applyEdit``) is ``lsp_server.commands``.
"""
