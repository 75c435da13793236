"""Answering an instruction (explain / refactor / docstring): which model, and the greedy decode.

Why a module of its own: the answer may come from the completion model (the default) or from a separate
``instructModel`` that is loaded on the first action and kept; both run on the one model worker, because
neither the models nor the engine's cache are thread-safe.  ``run`` is called on that worker only; the
cheap ``instruction_tuned_hint`` is for the event loop (action titles), and never loads weights.

Whether a model is instruction-tuned is read from its files, not assumed: ``"instruction_tuned"`` in its
``config.json`` when present, else "instruct" in its name (the setting, the folder, the hub repository).
The embedded model is not, and every answer from such a model says so.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lsp_server.actions import instruct
from lsp_server.completion.core import CompletionCore, NotReadyError
from lsp_server.completion.prompts import render
from model_backend import remote
from model_backend.engine import Engine
from model_backend.generation import Backend, EngineError, GenerationRequest
from model_backend.loading import LoadedModel, LoadSpec, ModelLoadError, load, resolve_path
from model_backend.remote import RemoteBackend
from model_backend.tokenization import CodeLlamaTokenizer

log = logging.getLogger(__name__)
STREAM_EVERY = 8  # tokens between streamed partial answers (progress messages)
OnText = Callable[[str, int], None]  # (answer so far, tokens so far)


@dataclass(frozen=True)
class Job:
    """One request, built on the event loop from immutable values (the worker never reads live documents)."""

    task: instruct.Task
    selection: instruct.Selection
    instruction: str | None
    budget: int
    max_new_tokens: int


@dataclass
class Answer:
    """What the model said, and everything the user must be told about it."""

    text: str
    stop: str  # eos, max_tokens, context, cancelled; "refused" (not run) or "error"
    model: str = ""
    instruction_tuned: bool = False
    prompt: instruct.InstructPrompt | None = None
    budget: int = 0
    error: str | None = None
    generated_tokens: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def cut(self) -> bool:
        return self.prompt is not None and self.prompt.cut


def is_instruction_tuned(setting: str | None, path: Path) -> bool:
    """From the checkpoint: its config's ``instruction_tuned`` flag, else "instruct" in one of its names."""
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        config = {}
    flag = config.get("instruction_tuned") if isinstance(config, dict) else None
    if isinstance(flag, bool):
        return flag
    names = [setting or "", path.name, str(config.get("_name_or_path", "")) if isinstance(config, dict) else ""]
    names += [p for p in path.parts[-3:] if p.startswith("models--")]  # hub cache: models--org--Name/snapshots/x
    return any("instruct" in name.lower() for name in names)


class Assistant:
    """Owns the optional separate instruct model; answers jobs on the model worker."""

    def __init__(self, core: CompletionCore) -> None:
        self.core = core
        self._own: tuple[LoadSpec, LoadedModel, Engine] | None = None  # worker thread only
        self._remote_own: tuple[str, RemoteBackend] | None = None  # instructEndpoint's engine (worker thread only)
        self._hints: dict[str | None, bool] = {}

    # -- event loop ------------------------------------------------------------------------------
    def instruction_tuned_hint(self) -> bool:
        """Whether the model that would answer is instruction-tuned, from its files (cached per setting)."""
        s = self.core.settings
        setting = s.instruct_model or s.model
        if setting not in self._hints:
            try:
                self._hints[setting] = is_instruction_tuned(setting, resolve_path(setting))
            except ModelLoadError:
                self._hints[setting] = False
        return self._hints[setting]

    # -- worker ----------------------------------------------------------------------------------
    def _model(self) -> tuple[LoadedModel, Engine]:
        """The completion model, unless ``instructModel`` names another checkpoint (loaded once, kept)."""
        s = self.core.settings
        if s.instruct_model is not None and resolve_path(s.instruct_model) != resolve_path(s.model):
            spec = LoadSpec(s.instruct_model, s.quantization, s.device, s.dtype, s.threads)
            if self._own is None or self._own[0] != spec:
                self._own = None  # free the previous one before loading
                log.info("loading instructModel %s", s.instruct_model)
                loaded = load(spec)
                engine = Engine(loaded.model, s.context_window, decode=s.decode,
                                vocab_limit=loaded.tokenizer.vocab_size)
                engine.warm_up(loaded.tokenizer.bos_id)  # on CUDA: the decode graphs, before the first answer
                self._own = (spec, loaded, engine)
            return self._own[1], self._own[2]
        self._own = None
        if self.core.loaded is None or self.core.engine is None:
            raise NotReadyError(self.core.load_error or "the model is still loading")
        return self.core.loaded, self.core.engine

    def _answerer(self) -> tuple[str, bool, CodeLlamaTokenizer, Backend, int]:
        """(model name, instruction-tuned?, tokenizer, backend, context) of whatever answers the action."""
        s = self.core.settings
        if s.backend != "local":
            return self._remote()
        loaded, engine = self._model()
        tuned = is_instruction_tuned(s.instruct_model or s.model, loaded.path)
        return loaded.name, tuned, loaded.tokenizer, engine, engine.max_context

    def _remote(self) -> tuple[str, bool, CodeLlamaTokenizer, Backend, int]:
        """A remote backend: the completion engine, or ``instructEndpoint``'s (same kind, same tokenizer: Code
        Llama - Instruct shares the base model's vocabulary; checked like the completion engine)."""
        s = self.core.settings
        tok, backend = self.core.tokenizer, self.core.backend
        if tok is None or not isinstance(backend, RemoteBackend):
            raise NotReadyError(self.core.load_error or "the engine is still being reached")
        if s.instruct_endpoint and s.instruct_endpoint != s.endpoint:
            if self._remote_own is None or self._remote_own[0] != s.instruct_endpoint:
                if self._remote_own is not None:
                    self._remote_own[1].close()
                other = remote.connect(s.backend, s.instruct_endpoint, tok, s.tokenizer or s.model or "embedded",
                                       s.api_key_env, s.request_timeout_ms)
                self._remote_own = (s.instruct_endpoint, other)
            backend = self._remote_own[1]
            if not backend.checked:
                backend.check()
        name = backend.engine_model or str(s.instruct_endpoint or s.endpoint)
        return name, "instruct" in name.lower(), tok, backend, backend.max_context or s.context_window

    def run(self, job: Job, on_text: OnText | None = None, cancel: threading.Event | None = None) -> Answer:
        """Build the prompt for the answering model's tokenizer and decode greedily (worker thread)."""
        t0 = time.perf_counter()
        try:
            name, tuned, tok, engine, max_context = self._answerer()
        except (ModelLoadError, EngineError, NotReadyError) as exc:
            if self.core.settings.instruct_model:
                why = str(exc).replace("the `model` setting", "the `instructModel` setting")
                return Answer("", "error", error=f"instructModel {self.core.settings.instruct_model!r}: {why}")
            return Answer("", "error", error=f"the model is not available: {exc}")
        answer = Answer("", "refused", name, tuned)
        answer.budget = budget = min(job.budget, max_context - job.max_new_tokens - 1)
        try:
            prompt = instruct.build_prompt(tok, job.task, job.selection, budget, job.instruction)
        except instruct.PromptError as exc:
            answer.error = str(exc)
            return answer
        answer.prompt = prompt
        if prompt.cut and job.task == "refactor":
            answer.error = (f"the selection ({prompt.total_lines} lines) does not fit the instructTokens budget "
                            f"({budget} tokens), and a rewrite of part of it cannot replace all of it; select "
                            "less or raise instructTokens")
            return answer
        self.core.last_prompt = {"mode": "instruct", "task": job.task, "ids": prompt.ids, "healed": None,
                                 "text": render(tok, prompt.ids), "crossfile": []}

        def on_token(ids: list[int]) -> None:
            if on_text is not None and len(ids) % STREAM_EVERY == 0:
                on_text(tok.decode_middle(ids).strip(), len(ids))

        stops = {tok.eos_id} | ({tok.fim.eot} if tok.fim is not None else set())  # EOT: a FIM model's "done"
        t1 = time.perf_counter()
        try:
            result = engine.generate(GenerationRequest(prompt_ids=prompt.ids, max_new_tokens=job.max_new_tokens,
                                                       stop_ids=stops, cancel=cancel, on_token=on_token))
        except EngineError as exc:
            engine.reset()
            answer.stop, answer.error = "error", f"the model failed: {exc}"
            return answer
        answer.text = tok.decode_middle(result.ids).strip()
        answer.stop = result.stop
        answer.generated_tokens = len(result.ids)
        answer.timings = {"prepare_ms": (t1 - t0) * 1e3, "prefill_ms": result.prefill_ms,
                          "decode_ms": result.decode_ms}
        return answer
