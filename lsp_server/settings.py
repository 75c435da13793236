# How to add a setting: add a field to `Settings` below with `setting(default, About(...))` (its description, its
# choices or bounds, whether a change reloads the model), then run `python scripts/gen_settings.py`, which writes
# it into the VS Code package.json and serverKeys.ts, the Neovim help and the README (a test checks they agree).
"""User settings: one dataclass with documented defaults, validated at the protocol edge.

Settings arrive as ``initializationOptions`` and ``workspace/didChangeConfiguration`` in camelCase (VS Code
style, optionally nested under ``"codellama"``); snake_case is accepted too.  A bad value never stops the
server: it is reported (one message per problem) and the default is kept.  Each field's metadata holds what a
user is told about it, so the editors' settings and the README are generated from here and cannot drift.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class About:
    """What a user is told about one setting, and what it accepts."""

    doc: str  # markdown, one or two sentences; "Changing it reloads the model." is added where it does
    choices: tuple[str, ...] = ()  # the only accepted strings
    choice_docs: tuple[str, ...] = ()  # one line per choice, for VS Code's drop-down (optional)
    bounds: tuple[int, int] | None = None  # accepted whole numbers, inclusive
    reload: bool = False  # a change loads the model again; other changes apply to the next request
    null: str = ""  # for a text setting that may be null: what null means ("for the embedded model")
    client: bool = False  # VS Code acts on it itself: its package.json entry is the extension's, not generated
    editor: bool = True  # offered in VS Code's settings (False: a knob for measurements, documented only)
    scope: str = ""  # VS Code setting scope, where not the default ("machine-overridable" for paths)
    pattern: str = ""  # a text value must match this regular expression (whole value)
    accepts: str = ""  # what a text setting accepts, in words (default: a path or model id)


def setting(default: T, about: About) -> T:
    """A dataclass field carrying its ``About`` (read back with ``about``)."""
    return field(default=default, metadata={"about": about})


_PATH_ERROR = "must be a folder path or a locally cached model id (or null {})"


@dataclass(frozen=True)
class Settings:
    """Everything a user can configure (the README's settings table is generated from this)."""

    model: str | None = setting(None, About(
        "Code Llama checkpoint folder, or a Hugging Face id already in the local cache (never downloaded). "
        "Empty or `null`: the small embedded model.",
        reload=True, null="for the embedded model", scope="machine-overridable"))
    quantization: str = setting("none", About(
        "Weight quantization.", choices=("none", "nf4"), choice_docs=(
            "Weights as stored (or as `dtype` says).",
            "4-bit NF4 weights through bitsandbytes, bf16 compute (CUDA only; `pip install bitsandbytes`)."),
        reload=True))
    device: str = setting("auto", About(
        "Where the model runs: `auto` = CUDA if present.", choices=("auto", "cpu", "cuda"), reload=True))
    dtype: str = setting("auto", About(
        "Compute dtype: `auto` = bf16 on CUDA; on CPU the checkpoint's own dtype (fp16 weights are kept in fp16, "
        "activations in fp32).", choices=("auto", "float32", "bfloat16", "float16"), reload=True))
    fim_mode: str = setting("auto", About(
        "Fill-in-the-middle prompt format.", choices=("auto", "psm", "spm"), choice_docs=(
            "SPM with token healing (cache-friendly), PSM where healing cannot apply.",
            "Prefix-suffix-middle.",
            "Suffix-prefix-middle.")))
    prefix_tokens: int = setting(1500, About("Token budget for the text before the cursor.", bounds=(16, 16000)))
    suffix_tokens: int = setting(500, About("Token budget for the text after the cursor.", bounds=(0, 8000)))
    # Other files' definitions before the prefix (crossfile.py).  Off: with the embedded model it did not help
    # (benchmarks/results/crossfile_cpu.json); it is meant for models that can use it (7B and up).
    cross_file_context: bool = setting(False, About(
        "Show the model the definitions (signatures, docstrings, class outlines, constants) that the code near the "
        "cursor imports from other workspace files and open documents (Python), plus the lines around recent "
        "edits in other open documents. Meant for Code Llama 7B/13B; it did not help the embedded model."))
    cross_file_tokens: int = setting(512, About(
        "Token budget for cross-file context, taken out of `prefixTokens` (at most half of it).", bounds=(0, 8000)))
    max_new_tokens: int = setting(64, About("Longest suggestion, in tokens.", bounds=(1, 1024)))
    time_budget_ms: int = setting(2000, About(
        "Decoding stops this many milliseconds after the request and shows what it has.", bounds=(10, 120_000)))
    # fit_check.py decides what "does not fit" means.
    alternatives: int = setting(3, About(
        "When a suggestion would put a syntax error at the cursor or on the next code line, or a blank line got "
        "none: how many next-best answers to try, within `timeBudgetMs`. `0` shows the first answer as it is.",
        bounds=(0, 8)))
    # core.py decodes the extra suggestions only for Invoked requests (VS Code sends one when the user cycles).
    suggestions: int = setting(3, About(
        "How many distinct suggestions to offer when you ask for more (VS Code's Show Next Inline Suggestion, "
        "Neovim's next/previous keys), most likely first, within `timeBudgetMs`. The first is always the one "
        "shown as you type, which never waits for the others.", bounds=(1, 8)))
    context_window: int = setting(4096, About(
        "KV-cache length in tokens (prompt + suggestion).", bounds=(256, 131072), reload=True))
    cache_reuse: bool = setting(True, About(
        "Reuse the KV cache from request to request. Turn it off only to measure.", editor=False))
    threads: int = setting(0, About(
        "CPU threads for PyTorch (`0` = PyTorch's default).", bounds=(0, 256), reload=True))
    decode: str = setting("auto", About(
        "Decode step.", choices=("auto", "eager", "static", "compiled", "native"), choice_docs=(
            "Static on CUDA, native on CPU.",
            "One step at a time, shapes as they come.",
            "Fixed shapes; on CUDA replayed from CUDA graphs captured while loading.",
            "CPU: the one-token step compiled by TorchInductor into fused loops over a half-precision KV cache, "
            "about twice as fast as eager. Compiled while the model loads (needs a C++ compiler; the first time "
            "takes tens of seconds, later starts a few, from Inductor's cache); eager if it fails.",
            "CPU (x86-64 with AVX2): the one-token step as one call into hand-written C++ over a half-precision KV "
            "cache, about twice as fast as compiled. Built with the system's C++ compiler the first time (a few "
            "seconds, then cached); where it cannot run, compiled, then eager."),
        reload=True))
    # model_backend/speculative.py: prompt-lookup drafts verified by the model; the output is plain decoding's.
    speculative: bool = setting(True, About(
        "Speculative decoding with drafts taken from the code itself (what followed the last tokens earlier in the "
        "file or in the previous suggestion), verified several tokens per model pass. Suggestions are exactly the "
        "same as without it, only sooner. On the CPU's native decode step it stands down: there a verify pass costs "
        "more than it saves on single-line suggestions."))
    prefetch: bool = setting(True, About(
        "After a suggestion is shown and the model is idle, compute the one that would follow if you accept it, "
        "so accepting shows the next at once. Any keystroke that needs the model cancels it."))
    enabled: bool = setting(True, About("Answer completion requests at all.", client=True))
    # Code actions (explain / refactor / docstring) with Code Llama - Instruct (assistant.py, instruct.py).
    instruct_model: str | None = setting(None, About(
        "Model for the code actions (Explain, Refactor, Add docstring), for example a Code Llama 7B - Instruct "
        "folder. Empty or `null`: the completion model. Loaded on the first action and kept.",
        null="to use the completion model"))
    instruct_tokens: int = setting(3000, About(
        "Prompt budget of a code action, in tokens. A longer selection is cut, and the answer says so.",
        bounds=(256, 100_000)))
    instruct_max_new_tokens: int = setting(512, About(
        "Longest code-action answer, in tokens.", bounds=(1, 4096)))
    # Remote engines (model_backend/remote): prompts, post-processing and stats stay here; generation runs there.
    backend: str = setting("local", About(
        "Where suggestions are generated. The prompts are built here either way.", choices=("local", "llama.cpp",
                                                                                              "openai"),
        choice_docs=("This server's own engine, in process.",
                     "A llama.cpp `llama-server` at `endpoint` (its `/completion`, prompt cache reused).",
                     "An OpenAI-compatible `/v1/completions` at `endpoint` (vLLM, llama-server)."),
        reload=True))
    endpoint: str | None = setting(None, About(
        "Base URL of the remote engine, e.g. `http://127.0.0.1:8080` (`backend` llama.cpp or openai).",
        reload=True, null="for none", pattern=r"https?://[^\s/?#]+(/\S*)?", accepts="http:// or https:// URL",
        scope="machine-overridable"))
    api_key_env: str | None = setting(None, About(
        "Name of the environment variable that holds the remote engine's API key (sent as a Bearer token). "
        "The key itself never goes into settings, logs or stats.",
        reload=True, null="for no key", pattern=r"[A-Za-z_][A-Za-z0-9_]*", accepts="environment variable name"))
    request_timeout_ms: int = setting(10_000, About(
        "A remote engine silent this long counts as down: completions are empty meanwhile and retried with backoff.",
        bounds=(100, 600_000), reload=True))
    tokenizer: str | None = setting(None, About(
        "With a remote backend: the folder (or cached hub id) whose `tokenizer.model` builds the prompts; it must "
        "be the served model's. Empty or `null`: `model`'s.", reload=True, null="to use `model`",
        scope="machine-overridable"))
    engine_slots: str = setting("similarity", About(
        "With `backend` llama.cpp: which of the engine's slots (`--parallel`) a request uses, and so whose prompt "
        "cache it reuses.", choices=("similarity", "document"),
        choice_docs=("The engine routes each request to the idle slot whose cached prompt is most alike.",
                     "Each document always uses its own slot (a hash of its URI): its cache survives other "
                     "editors' requests; two documents may share one."),
        reload=True))
    instruct_endpoint: str | None = setting(None, About(
        "With a remote backend: the engine for the code actions (same kind), e.g. one serving Code Llama - "
        "Instruct. Empty or `null`: `endpoint`.", null="to use `endpoint`", pattern=r"https?://[^\s/?#]+(/\S*)?",
        accepts="http:// or https:// URL", scope="machine-overridable"))
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # unknown keys, kept for logs


def about(name: str) -> About | None:
    """The ``About`` of a setting (snake_case name), or None for a field that is not one (``extra``)."""
    found = Settings.__dataclass_fields__.get(name)
    value = found.metadata.get("about") if found is not None else None
    return value if isinstance(value, About) else None


def setting_names() -> list[str]:
    """Every setting's snake_case name, in the dataclass's order."""
    return [f.name for f in dataclasses.fields(Settings) if about(f.name) is not None]


def camel(name: str) -> str:
    """The name a client uses: ``max_new_tokens`` -> ``maxNewTokens``."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _unwrap(raw: Any) -> dict[str, Any]:
    """Accept ``{"codellama": {...}}`` (VS Code style) as well as the flat object."""
    if not isinstance(raw, dict):
        return {}
    inner = raw.get("codellama")
    return inner if isinstance(inner, dict) else raw


def _check(info: About, value: Any, default: Any) -> str | None:
    """Why ``value`` is not acceptable for the setting described by ``info``, or None."""
    if info.choices:
        if value not in info.choices:
            return f"must be one of {', '.join(info.choices)}"
    elif isinstance(default, bool):
        if not isinstance(value, bool):
            return "must be true or false"
    elif info.bounds is not None:
        lo, hi = info.bounds
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            return f"must be a whole number from {lo} to {hi}"
    elif info.pattern and value is not None:
        if not isinstance(value, str) or not re.fullmatch(info.pattern, value):
            return f"must be an {info.accepts}" + (f" (or null {info.null})" if info.null else "")
    elif info.null and value is not None and (not isinstance(value, str) or not value.strip()):
        return _PATH_ERROR.format(info.null)
    return None


def parse_settings(raw: Any, base: Settings | None = None) -> tuple[Settings, list[str]]:
    """Merge ``raw`` over ``base``; returns the settings and one message per rejected value."""
    base = base or Settings()
    changes: dict[str, Any] = {}
    problems: list[str] = []
    extra: dict[str, Any] = {}
    for key, value in _unwrap(raw).items():
        name = _snake(key)
        info = about(name)
        if info is None:
            extra[key] = value
            continue
        if info.null and value == "":
            value = None
        why = _check(info, value, getattr(base, name))
        if why is None:
            changes[name] = value
        else:
            shown = "(a value not shown: it may be the key itself)" if name == "api_key_env" else repr(value)
            problems.append(f"setting {key!r} = {shown} ignored: {why} (keeping {getattr(base, name)!r})")
    return dataclasses.replace(base, extra=extra, **changes), problems


def needs_reload(old: Settings, new: Settings) -> bool:
    """Whether moving from ``old`` to ``new`` requires loading the model again."""
    return any(getattr(old, k) != getattr(new, k) for k in setting_names() if (info := about(k)) and info.reload)
