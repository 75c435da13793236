"""Backends that run the model: the engine-neutral request (``generation``), the local model (``llama``) and
decode loop (``engine``, ``static_decode``), loading and tokenisation, and the embedded model."""
