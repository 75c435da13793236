"""The GPU benchmark script runs end to end on CPU (``--smoke``) and reports every field; no timing is asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmarks import gpu_bench

VARIANT_FIELDS = {"cold_prefill_ms", "decode_ms_per_token", "decode_tokens_per_s", "keystroke_ms_p50",
                  "keystroke_ms_p95", "keystroke_ms", "distinct_output_tokens", "seconds"}


def test_smoke_run_on_cpu_reports_everything_and_the_engine_paths_agree(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    returned = gpu_bench.main(["--device", "cpu", "--smoke", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report == json.loads(json.dumps(returned))
    assert report["errors"] == []
    assert report["device"] == "cpu" and report["quantization"] == "none" and report["smoke"] is True
    assert report["projection_type"] == "Linear"  # unquantised on CPU (NF4 on CUDA shows Linear4bit)
    assert report["config"]["vocab_size"] == 32016 and report["prompt_tokens"] == gpu_bench.SMOKE.prompt_tokens
    for key in ("checkpoint", "load", "total"):
        assert key in report["seconds"]
    assert set(report["variants"]) == set(gpu_bench.VARIANTS.values())
    for name, entry in report["variants"].items():
        assert set(entry) >= VARIANT_FIELDS, name
        assert len(entry["keystroke_ms"]) == gpu_bench.SMOKE.keystrokes
    engines = [v for k, v in report["variants"].items() if k != "a_generate"]
    assert all("warm_up_s" in e and "prefilled_tokens_per_keystroke" in e for e in engines)
    assert report["variants"]["c_engine_static_reuse"]["decode"] == "static"
    assert report["variants"]["d_engine_reuse_eager"]["prefilled_tokens_per_keystroke"] < 5  # reuse really on
    memory = report["memory"]
    for key in ("weights_gib", "kv_cache_kib_per_token", "kv_cache_gib_16k", "weights_plus_kv_16k_gib",
                "max_memory_allocated_gib", "gpu_allocated_after_load_gib", "kv_cache_gib_context_window"):
        assert key in memory
    assert memory["kv_cache_kib_per_token"] == 2 * 4 * 4 * 64 * 4 / 1024  # float32 cache on CPU
    for key in ("speedup_c_over_a_p50", "speedup_c_over_b_p50", "decode_speedup_c_over_a"):
        assert isinstance(report[key], float)
    eq = report["equality"]
    assert eq["b_equals_c"] is True and eq["c_equals_e"] is True  # float32 on CPU: the paths agree exactly
    assert eq["b_vs_c"]["identical_keystrokes"] == gpu_bench.SMOKE.keystrokes
    assert eq["c_equals_s"] is True  # speculative decoding: the same greedy output (float32 on CPU)
    spec = report["variants"]["s_engine_static_reuse_speculative"]
    assert spec["decode"] == "static" and spec["tokens_per_model_pass"] >= 1.0
    assert isinstance(report["speedup_s_over_c_p50"], float)
    assert "a_vs_b" in eq and "note" in eq
    assert report["variants"]["c_engine_static_reuse"]["distinct_output_tokens"] > 5  # not one token repeated
    agreement = report["variants"]["c_engine_static_reuse"]["step_agreement"]  # teacher-forced, float32
    assert agreement["steps"] == gpu_bench.SMOKE.agreement_steps
    assert agreement["eager_step_repeatable"] == agreement["steps"]
    for pair in ("c_vs_e", "c_vs_eager_forward", "e_vs_eager_forward"):
        assert agreement[pair]["argmax_disagreements"] == 0 and agreement[pair]["max_abs_logit_diff"] < 1e-3


def test_nf4_without_its_requirements_is_refused_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit, match="needs a CUDA GPU"):
        gpu_bench.requirements(torch.device("cpu"), "nf4")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(gpu_bench.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SystemExit, match="pip install bitsandbytes"):
        gpu_bench.requirements(torch.device("cuda"), "nf4")
    gpu_bench.requirements(torch.device("cuda"), "none")  # bf16 on the GPU needs nothing more
