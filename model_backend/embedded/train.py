"""Train the embedded Code-Llama-format model: one file, nanoGPT style, meant to be read top to bottom.

Run: ``python -m model_backend.embedded.train --minutes 10 --device cpu --out model_backend/embedded/weights``

Data (``corpus.py`` builds it): documents are held out by a hash of their path (``--val-pct``), cut into
windows of at most ``--window-chars`` characters at line boundaries (by default sized so a sample fits one
sequence), and every window becomes one sample with Code Llama's objective (``docs/prompt-format.md``):

* with probability ``1 - --fim-rate`` (10%) a plain sample ``[BOS] + enc(doc) + [EOS]``;
* otherwise the window is split into prefix / middle / suffix and encoded, half the time each, as
  PSM ``psm_ids(prefix, suffix) + enc_nospace(middle) + [EOT]`` or as
  SPM ``[BOS, PRE, SUF] + enc_nospace(suffix) + [MID] + enc(prefix + middle) + [EOT]`` (prefix and middle
  are ONE string in SPM, as in Code Llama's training, so the model never sees a token split at the cursor).

Where the cuts go: Code Llama uses two uniform random character positions.  ``--cursor-share`` (default
half) of the FIM samples instead cut where an editor's cursor sits when the product asks for a completion,
because the product mostly asks for the rest of a line or a few whole lines, and a 6 M-parameter model has
no capacity to spare on what is never asked: a random non-blank line is picked, then half the time the cursor
goes anywhere after its indentation and the middle is the rest of that line (sometimes empty: then the model
must answer EOT at once), and half the time the cursor sits right after the indentation and the middle is
that line plus 0-3 following ones.  The middle never includes the final newline, as a single-line request
stops there.

Packing: samples go into fixed ``--seq-len`` rows by best fit from a pool (the largest waiting sample that
fits the space left), so fewer samples are cut in two than with plain streaming; a sample longer than a
row, or one filling a space no sample fits, is split; a space under 1/8 of a row is padding with no loss.
Measured on this corpus: about 1% padding, about half the samples whole.  Loss on every other token, as
Code Llama does.  Worker processes (``--workers``) build and encode samples so a GPU is not starved
(one worker makes ~1.5 M tokens/s of samples).

Schedule: ``--minutes`` is the wall-clock budget of the whole run, setup and compile included.  The learning
rate follows the *time* spent (warm-up, then cosine to 10% at the deadline), so a run of any speed still
ends with a decayed rate.  Checkpoints are written to ``--out`` every ``--save-minutes``, atomically, so a
killed run leaves a usable model.  The final folder (fp16 weights, ``tokenizer.model``, configs and
``training.json``) must fit ``--size-cap`` bytes: it ships inside the package.  ``--init FOLDER`` trains a
saved model further instead of a fresh one (its shape, its weights; the log starts with its validation losses).

On one H200/H100 (bf16 autocast, TF32; ``--compile`` falls back to eager if it fails; the corpus must be
copied along, it is git-ignored): ``python3 -m model_backend.embedded.train --device cuda --compile --minutes 7
--seq-len 2048 --batch-size 64 --workers 12 --lr 2e-3 --warmup-steps 100 --val-rows 256 --eval-minutes 1.5
--save-minutes 2 --out $OUT/weights``.  On a 2-core CPU: fp32 eager (bf16 is slower there), ~2,200 tokens/s.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import itertools
import json
import math
import multiprocessing
import os
import random
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import transformers
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from model_backend import int8_storage
from model_backend.embedded import WEIGHTS_DIR
from model_backend.embedded.corpus import iter_corpus
from model_backend.tokenization import CodeLlamaTokenizer

TOKENIZER_CONFIG = {
    "tokenizer_class": "CodeLlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
    "prefix_token": "▁<PRE>", "suffix_token": "▁<SUF>", "middle_token": "▁<MID>", "eot_token": "▁<EOT>",
    "fill_token": "<FILL_ME>", "add_bos_token": True, "add_eos_token": False, "model_max_length": 4096,
}
Sample = tuple[list[int], int]  # token ids, index of the first token that is a loss target


def portable(text: str) -> str:
    """``text`` with this venv's and this checkout's absolute paths as ``<venv>/...`` and repository-relative ones:
    ``training.json`` ships in the package and must not carry the training machine's layout."""
    repo = str(Path(__file__).resolve().parents[2])
    return text.replace(sys.prefix, "<venv>").replace(repo + os.sep, "").replace(repo, ".")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, default=Path("data/corpus.jsonl.xz"))
    p.add_argument("--tokenizer", type=Path, default=WEIGHTS_DIR / "tokenizer.model")
    p.add_argument("--out", type=Path, default=Path("runs/embedded"))
    p.add_argument("--minutes", type=float, default=10.0, help="wall-clock budget of the whole run")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (falls back to eager on failure)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--init", type=Path, help="start from this saved folder (fp16 or int8) instead of random "
                                             "weights: its shape replaces --hidden/--layers/--heads/--kv-heads/--ffn")
    # data
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--window-chars", type=int, default=0, help="0: min(6000, 2.8 x seq-len)")
    p.add_argument("--fim-rate", type=float, default=0.9)
    p.add_argument("--spm-rate", type=float, default=0.5, help="share of FIM samples in SPM order")
    p.add_argument("--cursor-share", type=float, default=0.5, help="share of FIM samples cut at an editor cursor")
    p.add_argument("--val-pct", type=float, default=1.0, help="percent of documents held out")
    p.add_argument("--val-rows", type=int, default=32, help="rows per validation set")
    # model (defaults fit the 12,000,000-byte cap in fp16)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=7)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--ffn", type=int, default=608)
    p.add_argument("--size-cap", type=int, default=12_000_000, help="bytes of the saved folder")
    p.add_argument("--storage", choices=("fp16", "int8"), default="fp16",
                   help="weights file: fp16, or int8 rows with fp16 scales (model_backend/int8_storage.py), "
                        "which fits about twice the parameters under the cap")
    # optimisation
    p.add_argument("--lr", type=float, default=2.5e-3)
    p.add_argument("--min-lr-frac", type=float, default=0.1)
    p.add_argument("--warmup-frac", type=float, default=0.03, help="warm-up as a share of the time budget")
    p.add_argument("--warmup-steps", type=int, default=20, help="... and at least this many steps")
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--grad-clip", type=float, default=1.0)
    # bookkeeping
    p.add_argument("--log-every", type=int, default=10, help="steps")
    p.add_argument("--eval-minutes", type=float, default=2.0)
    p.add_argument("--save-minutes", type=float, default=5.0)
    args = p.parse_args(argv)
    if args.window_chars <= 0:
        args.window_chars = min(6000, int(2.8 * args.seq_len))
    return args


# ----------------------------------------------------------------------------------------------- data
def load_corpus(path: Path, val_pct: float) -> tuple[list[str], list[str], dict[str, Any]]:
    """Train and validation documents, split by a hash of the path so the split never depends on the seed."""
    train: list[str] = []
    val: list[str] = []
    for doc in iter_corpus(path):
        bucket = int(hashlib.sha1(doc["path"].encode()).hexdigest()[:8], 16) % 10_000
        (val if bucket < val_pct * 100 else train).append(doc["text"])
    summary = {
        "path": str(path), "bytes": path.stat().st_size, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "train_docs": len(train), "val_docs": len(val),
        "train_chars": sum(len(t) for t in train), "val_chars": sum(len(t) for t in val),
    }
    return train, val, summary


def windows(text: str, max_chars: int) -> list[str]:
    """``text`` cut at line boundaries into pieces of at most ``max_chars`` (over-long lines are cut hard)."""
    out: list[str] = []
    buf: list[str] = []
    size = 0
    for line in text.splitlines(keepends=True):
        pieces = [line[i:i + max_chars] for i in range(0, len(line), max_chars)]
        for piece in pieces:
            if size + len(piece) > max_chars and buf:
                out.append("".join(buf))
                buf, size = [], 0
            buf.append(piece)
            size += len(piece)
    if buf:
        out.append("".join(buf))
    return out


def random_split(text: str, rng: random.Random) -> tuple[str, str, str]:
    """Code Llama's split: two uniform random character positions."""
    i, j = sorted((rng.randint(0, len(text)), rng.randint(0, len(text))))
    return text[:i], text[i:j], text[j:]


def cursor_split(text: str, rng: random.Random) -> tuple[str, str, str]:
    """A split where an editor's cursor sits: rest of a line, or whole lines after the indentation."""
    lines = text.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    candidates = [k for k, line in enumerate(lines) if line.strip()]
    if not candidates:
        return random_split(text, rng)
    k = rng.choice(candidates)
    body = lines[k].rstrip("\r\n")
    indent = len(body) - len(body.lstrip())
    if rng.random() < 0.5:  # cursor somewhere in the line, middle = rest of the line
        cursor = starts[k] + rng.randint(indent, len(body))
        end = starts[k] + len(body)
    else:  # cursor after the indentation, middle = this line and up to 3 more (1 line half the time)
        n = 1 if rng.random() < 0.5 else rng.randint(2, 4)
        last = min(k + n - 1, len(lines) - 1)
        while not lines[last].strip():  # end on a line with code, never on a blank one
            last -= 1
        cursor = starts[k] + indent
        end = starts[last] + len(lines[last].rstrip("\r\n"))
    return text[:cursor], text[cursor:end], text[end:]


def make_sample(tok: CodeLlamaTokenizer, text: str, rng: random.Random, fim_rate: float, spm_rate: float,
                cursor_share: float) -> Sample:
    """One training sample in Code Llama's layouts (see the module docstring); loss on every token."""
    fim = tok.require_fim()
    if rng.random() >= fim_rate:
        return [tok.bos_id, *tok.encode(text), tok.eos_id], 0
    split = cursor_split if rng.random() < cursor_share else random_split
    prefix, middle, suffix = split(text, rng)
    if rng.random() < spm_rate:
        return [*tok.spm_ids(prefix + middle, suffix), fim.eot], 0
    return [*tok.psm_ids(prefix, suffix), *tok.encode_nospace(middle), fim.eot], 0


def middle_only_sample(tok: CodeLlamaTokenizer, text: str, rng: random.Random) -> Sample:
    """A PSM sample cut at a cursor whose loss counts only the middle and EOT: the product's own question."""
    prefix, middle, suffix = cursor_split(text, rng)
    prompt = tok.psm_ids(prefix, suffix)
    return [*prompt, *tok.encode_nospace(middle), tok.require_fim().eot], len(prompt)


def pack(samples: Iterator[Sample], seq_len: int, pad_id: int, pool_size: int = 64) -> Iterator[tuple[list[int], list[int]]]:  # noqa: E501
    """Best-fit packing into rows of ``seq_len + 1`` tokens; yields (ids, labels) with -100 where no loss."""
    pool: list[tuple[list[int], list[int]]] = []
    while True:
        ids: list[int] = []
        labels: list[int] = []
        while len(ids) < seq_len + 1:
            while len(pool) < pool_size:
                sample, loss_from = next(samples)
                pool.append((sample, [-100] * loss_from + sample[loss_from:]))
            space = seq_len + 1 - len(ids)
            fitting = [i for i, (s, _) in enumerate(pool) if len(s) <= space]
            if fitting:
                s, lab = pool.pop(max(fitting, key=lambda i: len(pool[i][0])))
            elif not ids or space >= seq_len // 8:  # nothing fits a large space: split the longest sample
                longest = max(range(len(pool)), key=lambda i: len(pool[i][0]))
                s, lab = pool.pop(longest)
                pool.append((s[space:], lab[space:]))
                s, lab = s[:space], lab[:space]
            else:
                break
            ids += s
            labels += lab
        labels += [-100] * (seq_len + 1 - len(ids))
        ids += [pad_id] * (seq_len + 1 - len(ids))
        yield ids, labels


def to_row(ids: list[int], labels: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(ids[:-1], dtype=torch.long), torch.tensor(labels[1:], dtype=torch.long)


class PackedFim(IterableDataset[tuple[torch.Tensor, torch.Tensor]]):
    """Endless packed rows; each worker owns a shard of the windows and its own seeded RNG."""

    def __init__(self, texts: list[str], args: argparse.Namespace) -> None:
        self.texts, self.args = texts, args

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        wid, nworkers = (info.id, info.num_workers) if info is not None else (0, 1)
        a = self.args
        tok = CodeLlamaTokenizer(a.tokenizer)  # loaded in the worker: sentencepiece runs there
        rng = random.Random(a.seed * 1_000_003 + wid)
        mine = self.texts[wid::nworkers]

        def samples() -> Iterator[Sample]:
            while True:  # epochs; every epoch draws new cut points
                rng.shuffle(mine)
                for text in mine:
                    yield make_sample(tok, text, rng, a.fim_rate, a.spm_rate, a.cursor_share)

        for ids, labels in pack(samples(), a.seq_len, tok.eos_id):
            yield to_row(ids, labels)


def validation_sets(tok: CodeLlamaTokenizer, texts: list[str], args: argparse.Namespace) -> dict[str, torch.Tensor]:
    """Fixed rows (same seed every run): Code Llama's objective, cursor-cut FIM, and middle-only PSM."""
    makers = {
        "val_codellama": lambda t, r: make_sample(tok, t, r, args.fim_rate, args.spm_rate, 0.0),
        "val_cursor": lambda t, r: make_sample(tok, t, r, 1.0, args.spm_rate, 1.0),
        "val_middle": lambda t, r: middle_only_sample(tok, t, r),
    }
    sets = {}
    for name, maker in makers.items():
        rng = random.Random(12345)

        def stream(maker: Any = maker, rng: random.Random = rng) -> Iterator[Sample]:
            while True:
                for text in texts:
                    yield maker(text, rng)

        rows = [to_row(*row) for row in itertools.islice(pack(stream(), args.seq_len, tok.eos_id), args.val_rows)]
        sets[name] = torch.stack([torch.stack(r) for r in rows])  # (rows, 2, seq_len)
    return sets


# ----------------------------------------------------------------------------------------------- model
def build_model(args: argparse.Namespace, tok: CodeLlamaTokenizer) -> transformers.LlamaForCausalLM:
    """A Llama with Code Llama's conventions (rope_theta 1e6), GQA and tied embeddings to fit the cap."""
    config = transformers.LlamaConfig(
        vocab_size=tok.vocab_size, hidden_size=args.hidden, intermediate_size=args.ffn,
        num_hidden_layers=args.layers, num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
        head_dim=args.hidden // args.heads, max_position_embeddings=4096, rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6}, tie_word_embeddings=True,
        bos_token_id=tok.bos_id, eos_token_id=tok.eos_id, attn_implementation="sdpa",  # type: ignore[call-arg]
    )
    return transformers.LlamaForCausalLM(config)


def init_model(args: argparse.Namespace) -> transformers.LlamaForCausalLM:
    """A saved model to train further, in float32; ``args`` take its shape so ``training.json`` records it."""
    from model_backend.loading import LoadSpec, load  # the server's loader: fp16 or int8 folders alike

    model: transformers.LlamaForCausalLM = load(LoadSpec(str(args.init), device="cpu", dtype="float32")).model
    c = model.config
    args.hidden, args.layers, args.heads = c.hidden_size, c.num_hidden_layers, c.num_attention_heads
    args.kv_heads, args.ffn = c.num_key_value_heads, c.intermediate_size
    return model


def loss_of(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits = model(input_ids=x, use_cache=False).logits
    return F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=-100)


@torch.no_grad()
def evaluate(model: torch.nn.Module, sets: dict[str, torch.Tensor], args: argparse.Namespace,
             autocast: Any) -> dict[str, float]:
    """Mean loss per target token of each fixed validation set."""
    model.eval()
    result = {}
    for name, rows in sets.items():
        total, count = 0.0, 0
        for i in range(0, len(rows), args.batch_size):
            batch = rows[i:i + args.batch_size].to(args.device)
            x, y = batch[:, 0], batch[:, 1]
            with autocast():
                logits = model(input_ids=x, use_cache=False).logits
            total += F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=-100,
                                     reduction="sum").item()
            count += int((y != -100).sum())
        result[name] = round(total / max(count, 1), 4)
    model.train()
    return result


def save_folder(model: transformers.PreTrainedModel, args: argparse.Namespace, info: dict[str, Any]) -> int:
    """Write the shippable folder atomically (temp folder, size check, then rename file by file)."""
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        raise SystemExit("refusing to save non-finite weights (the run diverged); the last checkpoint is kept")
    tmp = args.out.parent / f".{args.out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    half = copy.deepcopy(model).cpu().half()
    half.save_pretrained(tmp)  # transformers 5 writes safetensors only (safe_serialization is gone)
    if args.storage == "int8":  # the config stays; the float weights file is replaced by the int8 one
        (tmp / int8_storage.FLOAT_FILE).unlink()
        int8_storage.save(half, tmp)
    shutil.copyfile(args.tokenizer, tmp / "tokenizer.model")
    (tmp / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG, indent=2, ensure_ascii=False) + "\n")
    (tmp / "training.json").write_text(json.dumps(info, indent=2) + "\n")
    total = sum(f.stat().st_size for f in tmp.iterdir())
    if total > args.size_cap:
        shutil.rmtree(tmp)
        raise SystemExit(f"refusing to save: {total:,} bytes > cap {args.size_cap:,}")
    args.out.mkdir(parents=True, exist_ok=True)
    for f in tmp.iterdir():
        f.chmod(0o644)
        os.replace(f, args.out / f.name)
    tmp.rmdir()
    return total


def lr_at(args: argparse.Namespace, step: int, progress: float) -> float:
    """Linear warm-up (time share and step count, whichever is longer), then cosine to min-lr at the deadline."""
    warm = min(1.0, (step + 1) / args.warmup_steps, progress / args.warmup_frac if args.warmup_frac else 1.0)
    cosine = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return args.lr * warm * (args.min_lr_frac + (1 - args.min_lr_frac) * cosine)


def demo(model: transformers.LlamaForCausalLM, tok: CodeLlamaTokenizer, device: str) -> dict[str, str]:
    """Greedy infills in PSM and SPM of a small function: a quick look that the model is not garbage."""
    prefix = "def average(values):\n    total = 0\n    for v in values:\n        "
    suffix = "\n    return total / len(values)\n"
    fim = tok.require_fim()
    out = {}
    model.eval()
    for name, ids in (("psm", tok.psm_ids(prefix, suffix)), ("spm", tok.spm_ids(prefix, suffix))):
        x = torch.tensor([ids], device=device)
        gen = model.generate(x, max_new_tokens=24, do_sample=False, eos_token_id=[fim.eot, tok.eos_id],
                             pad_token_id=tok.eos_id, attention_mask=torch.ones_like(x))
        out[name] = tok.decode_middle(gen[0, len(ids):].tolist())
    model.train()
    return out


# ----------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    t0 = time.time()
    args = parse_args(argv)
    deadline = t0 + args.minutes * 60
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch sees no GPU (torch.cuda.is_available() is False)")
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.set_float32_matmul_precision("high")
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda else contextlib.nullcontext

    tok = CodeLlamaTokenizer(args.tokenizer)
    train_docs, val_docs, corpus = load_corpus(args.corpus, args.val_pct)
    train_texts = [w for d in train_docs for w in windows(d, args.window_chars)]
    val_texts = [w for d in val_docs for w in windows(d, args.window_chars)]
    del train_docs, val_docs
    print(f"corpus: {corpus['train_docs']} train docs -> {len(train_texts)} windows of <= {args.window_chars} chars; "
          f"{corpus['val_docs']} val docs", flush=True)
    val_sets = validation_sets(tok, val_texts, args)

    model = (init_model(args) if args.init is not None else build_model(args, tok)).to(args.device)
    n_params = sum(p.numel() for p in model.parameters())
    rows = sum(p.shape[0] if p.dim() == 2 else p.numel() for p in model.parameters())  # int8: fp16 scales, 1-D
    weight_bytes = 2 * n_params if args.storage == "fp16" else n_params + 2 * rows
    stored_bytes = weight_bytes + args.tokenizer.stat().st_size
    print(f"model: {n_params:,} parameters, {stored_bytes:,} bytes in {args.storage} with the tokenizer "
          f"(cap {args.size_cap:,})")
    if stored_bytes + 20_000 > args.size_cap:
        raise SystemExit("model too large for the size cap: shrink --hidden/--layers/--ffn")

    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    try:
        opt = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.95), fused=cuda)
    except (RuntimeError, TypeError) as err:
        print(f"warning: fused AdamW unavailable ({err}); using the default", flush=True)
        opt = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.95))
    step_model: torch.nn.Module = model
    if args.compile:
        step_model = torch.compile(model)  # type: ignore[assignment]

    mp_context = multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None
    loader = DataLoader(PackedFim(train_texts, args), batch_size=args.batch_size, num_workers=args.workers,
                        pin_memory=cuda, prefetch_factor=4 if args.workers else None,
                        persistent_workers=args.workers > 0,
                        multiprocessing_context=mp_context if args.workers else None)
    batches = iter(loader)

    def info(status: str, results: dict[str, float], samples: dict[str, str]) -> dict[str, Any]:
        return {
            "status": status,
            "settings": {k: portable(str(v)) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "seed": args.seed, "steps": step, "tokens_seen": int(tokens_seen), "parameters": n_params,
            "results": results, "demo": samples,
            "corpus": corpus, "torch": torch.__version__, "transformers": transformers.__version__,
            "device": torch.cuda.get_device_name() if cuda else f"cpu ({os.cpu_count()} cores)",
            "command": portable(" ".join([sys.executable, "-m", "model_backend.embedded.train", *sys.argv[1:]])),
            "elapsed_s": round(time.time() - t0, 1),
        }

    step = 0
    tokens_seen = torch.zeros((), dtype=torch.long, device=args.device)  # summed on the device: no sync per step
    losses: dict[str, float] = {}
    stop = {"signal": 0}
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.update(signal=signum))  # killed: still save
    sched_t0: float | None = None  # the schedule clock starts after the first (compile) step
    last_log = last_eval = last_save = time.time()
    eval_cost = 0.0  # seconds the last evaluation took: kept free before the deadline for the final one
    log_tokens, log_n = 0, 0
    log_loss = torch.zeros((), device=args.device)
    if args.init is not None:  # where further training starts from, on the same validation rows
        print(f"init eval {evaluate(model, val_sets, args, autocast)}", flush=True)
    model.train()
    while True:
        now = time.time()
        if stop["signal"] or (sched_t0 is not None and now >= deadline - eval_cost - 2):
            break
        progress = 0.0 if sched_t0 is None else (now - sched_t0) / max(deadline - sched_t0, 1e-9)
        lr = lr_at(args, step, progress)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        for _ in range(args.grad_accum):
            x, y = next(batches)
            x, y = x.to(args.device, non_blocking=True), y.to(args.device, non_blocking=True)
            try:
                with autocast():
                    loss = loss_of(step_model, x, y) / args.grad_accum
                loss.backward()
            except Exception as err:  # a compile failure must not waste the run
                if step_model is model:
                    raise
                print(f"warning: torch.compile failed ({type(err).__name__}: {err}); continuing eager", flush=True)
                step_model = model
                opt.zero_grad(set_to_none=True)
                with autocast():
                    loss = loss_of(model, x, y) / args.grad_accum
                loss.backward()
            log_loss += loss.detach()
            tokens_seen += (y != -100).sum()
            log_tokens += x.numel()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        step += 1
        log_n += 1
        if sched_t0 is None:
            sched_t0 = time.time()
            print(f"first step done after {sched_t0 - t0:.1f} s of setup/compile; loss {log_loss.item():.3f}",
                  flush=True)
            last_log, log_tokens, log_n = sched_t0, 0, 0
            log_loss.zero_()
            continue
        now = time.time()
        if step % args.log_every == 0:
            train_loss = log_loss.item() / log_n
            if not math.isfinite(train_loss):
                raise SystemExit(f"loss is {train_loss} at step {step}: diverged (lower --lr); last checkpoint kept")
            print(f"step {step:6d} | {100 * progress:5.1f}% | lr {lr:.2e} | loss {train_loss:.4f} | "
                  f"gnorm {grad_norm.item():.2f} | {log_tokens / (now - last_log):,.0f} tok/s | {now - t0:.0f} s",
                  flush=True)
            losses["train_loss"] = round(train_loss, 4)
            losses["tokens_per_s"] = round(log_tokens / (now - last_log))
            last_log, log_tokens, log_n = now, 0, 0
            log_loss.zero_()
        if now - last_eval >= args.eval_minutes * 60 and deadline - now > 3 * eval_cost:  # final eval comes soon
            losses.update(evaluate(model, val_sets, args, autocast))
            eval_cost = time.time() - now
            print(f"step {step:6d} | eval {losses} ({eval_cost:.1f} s)", flush=True)
            last_eval = time.time()
            last_log += eval_cost  # throughput counts training time only
        if now - last_save >= args.save_minutes * 60:
            save_folder(model, args, info("partial", losses, {}))
            last_save = time.time()
            last_log += last_save - max(now, last_eval)

    if stop["signal"]:
        print(f"stopped by signal {stop['signal']}: evaluating and saving what there is", flush=True)
    samples: dict[str, str] = {}
    try:  # neither may cost the trained weights
        losses.update(evaluate(model, val_sets, args, autocast))
        samples = demo(model, tok, args.device)
    except Exception as err:
        print(f"warning: final evaluation failed ({type(err).__name__}: {err}); saving anyway", flush=True)
    size = save_folder(model, args, info("final", losses, samples))
    print(json.dumps({"steps": step, "tokens_seen": int(tokens_seen), **losses, "demo": samples, "bytes": size,
                      "elapsed_s": round(time.time() - t0, 1), "out": str(args.out)}), flush=True)


if __name__ == "__main__":
    main()
