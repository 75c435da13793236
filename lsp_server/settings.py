"""User settings: one dataclass with documented defaults, validated at the protocol edge.

Settings arrive as ``initializationOptions`` and ``workspace/didChangeConfiguration`` in camelCase (VS Code
style, optionally nested under ``"codellama"``); snake_case is accepted too.  A bad value never stops the
server: it is reported (one message per problem) and the default is kept.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

CHOICES: dict[str, tuple[str, ...]] = {
    "quantization": ("none", "nf4"),
    "device": ("auto", "cpu", "cuda"),
    "dtype": ("auto", "float32", "bfloat16", "float16"),
    "fim_mode": ("auto", "psm", "spm"),
    "decode": ("auto", "eager", "static"),
}
RANGES: dict[str, tuple[int, int]] = {
    "prefix_tokens": (16, 16000),
    "suffix_tokens": (0, 8000),
    "max_new_tokens": (1, 1024),
    "time_budget_ms": (10, 120_000),
    "context_window": (256, 131072),
    "threads": (0, 256),
    "cross_file_tokens": (0, 8000),
    "instruct_tokens": (256, 100_000),
    "instruct_max_new_tokens": (1, 4096),
    "alternatives": (0, 8),
}
# Changing one of these means loading the model again; the rest apply to the next request.
RELOAD_KEYS = frozenset({"model", "quantization", "device", "dtype", "context_window", "threads", "decode"})


@dataclass(frozen=True)
class Settings:
    """Everything a user can configure.  See README "Settings" for the user-facing table."""

    model: str | None = None  # folder or locally cached hub id; None = the embedded model
    quantization: str = "none"  # "nf4": 4-bit weights through bitsandbytes (CUDA only)
    device: str = "auto"  # auto = cuda when available, else cpu
    dtype: str = "auto"  # auto = bfloat16 on cuda; on cpu the checkpoint's float16 if stored so, else float32
    fim_mode: str = "auto"  # auto = SPM with token healing (cache-friendly), PSM where healing cannot apply
    prefix_tokens: int = 1500
    suffix_tokens: int = 500
    # Other files' definitions before the prefix (crossfile.py).  Off: with the embedded model it did not help
    # (benchmarks/results/crossfile_cpu.json); it is meant for models that can use it (7B and up).
    cross_file_context: bool = False
    cross_file_tokens: int = 512  # their budget, taken out of prefix_tokens (at most half of it)
    max_new_tokens: int = 64
    time_budget_ms: int = 2000  # decoding stops after this long and shows what it has
    # When the answer does not fit the code around the cursor (a syntax error there once inserted), or a blank
    # line got nothing: how many next-best answers to try (fit_check.py).  0 = show the first answer as is.
    alternatives: int = 3
    context_window: int = 4096  # KV-cache length in tokens (prompt + suggestion)
    cache_reuse: bool = True  # reuse the KV cache across requests (off only for benchmarks)
    threads: int = 0  # CPU threads for torch; 0 = torch's default
    decode: str = "auto"  # decode step: static = fixed shapes, CUDA graphs on CUDA; auto = static on CUDA only
    enabled: bool = True
    # Code actions (explain / refactor / docstring) with Code Llama - Instruct (assistant.py, instruct.py).
    instruct_model: str | None = None  # None = the completion model; else loaded on the first action and kept
    instruct_tokens: int = 3000  # prompt budget: a longer selection is cut, and the answer says so
    instruct_max_new_tokens: int = 512  # longest answer in tokens
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # unknown keys, kept for logs


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _unwrap(raw: Any) -> dict[str, Any]:
    """Accept ``{"codellama": {...}}`` (VS Code style) as well as the flat object."""
    if not isinstance(raw, dict):
        return {}
    inner = raw.get("codellama")
    return inner if isinstance(inner, dict) else raw


def _check(name: str, value: Any, default: Any) -> str | None:
    """Why ``value`` is not acceptable for ``name``, or None."""
    if name in CHOICES:
        if value not in CHOICES[name]:
            return f"must be one of {', '.join(CHOICES[name])}"
    elif isinstance(default, bool):
        if not isinstance(value, bool):
            return "must be true or false"
    elif name in RANGES:
        lo, hi = RANGES[name]
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            return f"must be a whole number from {lo} to {hi}"
    elif name == "model" and value is not None and (not isinstance(value, str) or not value.strip()):
        return "must be a folder path or a locally cached model id (or null for the embedded model)"
    elif name == "instruct_model" and value is not None and (not isinstance(value, str) or not value.strip()):
        return "must be a folder path or a locally cached model id (or null to use the completion model)"
    return None


def parse_settings(raw: Any, base: Settings | None = None) -> tuple[Settings, list[str]]:
    """Merge ``raw`` over ``base``; returns the settings and one message per rejected value."""
    base = base or Settings()
    known = {f.name: f for f in dataclasses.fields(Settings) if f.name != "extra"}
    changes: dict[str, Any] = {}
    problems: list[str] = []
    extra: dict[str, Any] = {}
    for key, value in _unwrap(raw).items():
        name = _snake(key)
        if name not in known:
            extra[key] = value
            continue
        if name in ("model", "instruct_model") and value == "":
            value = None
        why = _check(name, value, getattr(base, name))
        if why is None:
            changes[name] = value
        else:
            problems.append(f"setting {key!r} = {value!r} ignored: {why} (keeping {getattr(base, name)!r})")
    return dataclasses.replace(base, extra=extra, **changes), problems


def needs_reload(old: Settings, new: Settings) -> bool:
    """Whether moving from ``old`` to ``new`` requires loading the model again."""
    return any(getattr(old, k) != getattr(new, k) for k in RELOAD_KEYS)
