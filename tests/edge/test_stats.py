"""Latency percentiles for ``codellama/stats`` and the benchmarks: the nearest-rank definition."""

from __future__ import annotations

from lsp_server.stats import Stats, nearest_rank, percentile


def test_nearest_rank_is_the_value_of_rank_ceil_p_times_n() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # 1..100, unsorted
    assert nearest_rank(values, 95) == 95.0  # rank ceil(0.95 * 100) = 95, not the 96th value
    assert nearest_rank(values, 50) == 50.0
    assert nearest_rank(values, 100) == 100.0 and nearest_rank(values, 0) == 1.0
    assert nearest_rank([3.0, 1.0, 2.0], 50) == 2.0  # rank ceil(1.5) = 2
    assert nearest_rank([7.0], 95) == 7.0
    assert nearest_rank([float(v) for v in range(1, 21)], 95) == 19.0  # rank ceil(19.0) = 19
    assert percentile([], 95) is None


def test_stats_report_p95_by_nearest_rank() -> None:
    stats = Stats()
    stats.latencies_ms.extend(float(v) for v in range(1, 101))
    data = stats.to_json()
    assert data["latency_ms_p95"] == 95.0 and data["latency_ms_p50"] == 50.0 and data["latency_samples"] == 100


def test_unreported_engine_counts_stay_out_of_the_reuse_figures() -> None:
    stats = Stats()
    stats.record_generation(100, 98, 2, 5)
    stats.record_generation(120, 0, 120, 4, known=False)  # a remote stream closed before its usage figures
    data = stats.to_json()
    assert (data["prompt_tokens"], data["reused_tokens"], data["prefilled_tokens"]) == (220, 98, 2)
    assert data["uncounted_prompt_tokens"] == 120 and data["generated_tokens"] == 9
