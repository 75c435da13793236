"""The CPU decode step as one call into hand-written C++ (``native_step.cpp``): AVX2/FMA/F16C x86-64 CPUs.

Why: the one-token step is a chain of matrix-vector products plus one attention row per head.  Compiled by Inductor
(``compiled_step.py``) its product loops were bound by their own arithmetic (one accumulator and one horizontal sum
per output row: ~16-19 G weights/s here, while the last-level cache streams several times that) and each call paid
~0.2 ms of Python around the kernel (guards, argument checks, ~90 buffer allocations).  The C++ step runs the same
arithmetic with eight independent FMA chains per four output rows, one OpenMP region per call and no Python in
between; ``benchmarks/README.md`` ("Speed") has the figures.

It is compiled here, once per source version, with the system's C++ compiler (the one Inductor also needs) into a
cache folder, and loaded with ctypes: no build step at install, no Python headers.  Where it cannot run (another
architecture, no AVX2, no compiler, quantised or mixed-dtype weights, shapes it does not handle) ``NativeStep``
raises ``ValueError`` and the engine falls back to the Inductor step, then to eager.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import torch

from model_backend.llama import LlamaRunner

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("native_step.cpp")
FLAGS = ["-O3", "-std=c++17", "-mavx2", "-mfma", "-mf16c", "-fopenmp", "-shared", "-fPIC"]
MAX_ROWS = 16  # tokens one call runs (a keystroke's prompt tail, a verify pass); longer runs go in pieces


def cache_dir() -> Path:
    """Where the compiled library is kept: ``$CODELLAMA_LSP_CACHE`` or ``$XDG_CACHE_HOME``/``~/.cache``."""
    root = os.environ.get("CODELLAMA_LSP_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "codellama-lsp")
    return Path(root)


def cpu_supported() -> bool:
    """x86-64 with AVX2 (which PyTorch's own dispatch has already detected; FMA and F16C come with every AVX2 CPU
    we know of)."""
    return platform.machine().lower() in ("x86_64", "amd64") and \
        torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")


def build() -> Path:
    """The compiled library for this source and these flags, compiling it if it is not cached yet (~1.5 s on the
    2-core dev VM)."""
    source = SOURCE.read_bytes()
    compiler = os.environ.get("CXX", "g++")
    key = hashlib.sha256(source + " ".join([compiler, *FLAGS]).encode()).hexdigest()[:16]
    target = cache_dir() / f"native_step-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        partial = Path(tmp) / target.name
        done = subprocess.run([compiler, *FLAGS, str(SOURCE), "-o", str(partial)], capture_output=True, text=True,
                              timeout=300)
        if done.returncode != 0:
            raise ValueError(f"compiling {SOURCE.name} failed: {done.stderr.strip()[-2000:]}")
        partial.replace(target)  # atomic: another process never loads a half-written library
    return target


class NativeStep:
    """``native_step.cpp`` over one ``LlamaRunner``'s weights and half-precision KV cache; same interface as
    ``compiled_step.CompiledStep`` (``compile``, ``ready``, ``failed``, ``covers``, ``step``, ``run``,
    ``tail_steps``, ``verify_rows``).  Not thread-safe."""

    def __init__(self, runner: LlamaRunner) -> None:
        if runner.device.type != "cpu" or not cpu_supported():
            raise ValueError("the native step needs an x86-64 CPU with AVX2")
        if runner.cache.k[0].dtype != torch.float16 or runner.act_dtype != torch.float32:
            raise ValueError("the native step needs float32 activations and a half-precision KV cache")
        self.runner = runner
        hd, dim, ffn = runner.head_dim, runner.layers[0].qkv.modules[0].in_features, runner.layers[0].ffn
        if hd > 256 or hd % 8 or dim % 8 or ffn % 8:
            raise ValueError(f"the native step needs sizes in multiples of 8 and head_dim <= 256 ({dim}, {ffn}, {hd})")
        weight_dtype = runner.weight_dtype
        if weight_dtype not in (torch.float16, torch.float32):
            raise ValueError(f"the native step reads float16 or float32 weights, not {weight_dtype}")
        keep: list[torch.Tensor] = []  # every tensor whose address the library gets stays alive here

        def address(t: torch.Tensor | None, what: str, dtype: torch.dtype) -> int:
            if t is None or t.dtype != dtype or not t.is_contiguous():
                raise ValueError(f"the native step needs plain, contiguous {dtype} {what}")
            keep.append(t)
            return int(t.data_ptr())

        embed = runner.model.model.embed_tokens.weight.detach()
        vocab = int(runner.lm_head.weight.shape[0]) if runner.lm_head.weight is not None else 0
        self.vocab = vocab
        # per row: x and its norm [D], q/k/v, the attention output, gate/up, the SiLU product; per thread: one
        # attention row
        self.max_threads = max(os.cpu_count() or 1, torch.get_num_threads())
        per_row = 2 * dim + (runner.n_heads + 2 * runner.n_kv) * hd + runner.n_heads * hd + 3 * ffn
        scratch = torch.zeros(MAX_ROWS * per_row + self.max_threads * runner.max_len, dtype=torch.float32)
        pointers = [address(embed, "embeddings", weight_dtype), address(runner.lm_head.weight, "lm head", weight_dtype),
                    address(runner.final_norm[0], "norm", torch.float32),
                    address(runner.cos, "rotary table", torch.float32),
                    address(runner.sin, "rotary table", torch.float32), address(scratch, "scratch", torch.float32)]
        eps: list[float] = []
        for i, layer in enumerate(runner.layers):
            pointers += [address(layer.attn_norm[0], "norm", torch.float32),
                         address(layer.qkv.weight, "projections", weight_dtype),
                         address(layer.o_proj.weight, "projections", weight_dtype),
                         address(layer.mlp_norm[0], "norm", torch.float32),
                         address(layer.gate_up.weight, "projections", weight_dtype),
                         address(layer.down_proj.weight, "projections", weight_dtype),
                         address(runner.cache.k[i], "keys", torch.float16),
                         address(runner.cache.v[i], "values", torch.float16)]
            eps += [layer.attn_norm[1], layer.mlp_norm[1]]
        eps.append(runner.final_norm[1])
        self._keep = keep
        self._shape = (ctypes.c_int64 * 10)(len(runner.layers), dim, runner.n_heads, runner.n_kv, hd, ffn, vocab,
                                            runner.max_len, int(weight_dtype == torch.float16), 1)
        self._pointers = (ctypes.c_void_p * len(pointers))(*pointers)
        self._eps = (ctypes.c_float * len(eps))(*eps)
        self._fn: Any = None
        self.ready = False
        self.failed: str | None = None
        # A prompt tail up to this long runs here rather than as one eager pass (at ~1,550 cached tokens: 32 rows
        # 8.2 ms here vs 17.0 eager with fp16 weights, 8.7 vs 13.7 with fp32; 64 rows 13.8 vs 13.2 and 16.0 vs
        # 14.6), and so does a verify pass of up to ``verify_rows`` rows.
        self.tail_steps = 48
        self.verify_rows = MAX_ROWS

    def compile(self) -> bool:
        """Build (or find in the cache) and load the library; True if it is ``ready``."""
        try:
            library = ctypes.CDLL(str(build()))
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            self.failed = f"{type(exc).__name__}: {exc}"
            log.warning("building the native CPU decode step failed: %s", self.failed)
            return False
        fn = library.native_forward
        fn.restype = None
        fn.argtypes = [ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_float),
                       ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64]
        self._fn = fn
        self.ready = True
        return True

    def covers(self, pos: int) -> bool:
        """Whether a step at ``pos`` runs here: every position of the KV buffer once the library is loaded."""
        return self.ready and 0 <= pos < self.runner.max_len

    def step(self, token: int, pos: int) -> torch.Tensor:
        """``token``'s logits ``[V]`` at ``pos`` (where ``covers``), its keys/values written into the cache."""
        return self.run([token], pos)[0]

    def run(self, ids: list[int], start: int, rows: int = 1) -> torch.Tensor:
        """``ids`` at positions start.. (each seeing the cache up to itself), their keys/values written; the logits
        of the last ``rows`` of them ``[rows, V]``.  Up to ``MAX_ROWS`` ids a call, longer runs in pieces."""
        if not ids or not 1 <= rows <= len(ids):
            raise ValueError(f"{rows} rows of logits asked for {len(ids)} ids")
        if any(not 0 <= t < self.vocab for t in ids):
            raise ValueError(f"a token id outside the vocabulary ({self.vocab})")
        if start < 0 or start + len(ids) > self.runner.max_len:  # the library writes the cache unchecked
            raise ValueError(f"positions {start}..{start + len(ids) - 1} outside the KV buffer "
                             f"({self.runner.max_len})")
        self._shape[9] = min(torch.get_num_threads(), self.max_threads)
        logits = torch.empty(rows, self.vocab, dtype=torch.float32)
        done = 0
        while done < len(ids):
            piece = ids[done:done + MAX_ROWS]
            left = len(ids) - done - len(piece)  # ids after this piece
            wanted = min(len(piece), max(0, rows - left))  # of this piece's rows, those among the last ``rows``
            tokens = (ctypes.c_int64 * len(piece))(*piece)
            out = logits[rows - left - wanted:rows - left] if wanted else torch.empty(1, self.vocab)
            self._fn(self._shape, self._pointers, self._eps, tokens, len(piece), start + done,
                     out.data_ptr(), max(wanted, 1))
            done += len(piece)
        return logits
