"""bench_deploy's cohort-100 verdict: wall time when the two simulations agree, CPU when not."""

from __future__ import annotations

from benchmarks.bench_deploy import SPREAD_LIMIT, TARGET, target_verdicts


def _row(spread, warm, warm_cpu, sums=None, sums_cpu=None):
    row = {"cohort": 100, "sim_runs_spread": spread, "warm_over_sim": warm, "warm_over_sim_cpu": warm_cpu}
    if sums is not None:
        row |= {"sums_over_sim": sums, "sums_over_sim_cpu": sums_cpu}
    return row


def test_steady_simulations_judge_on_wall_time():
    v = target_verdicts(_row(1.05, 3.9, 3.6, 1.25, 1.4))
    assert v["warm"] == {"met": False, "basis": "wall", "value": 3.9, "text": v["warm"]["text"]}
    assert v["sums"]["met"] and v["sums"]["basis"] == "wall" and "met (wall 1.25)" in v["sums"]["text"]


def test_a_moving_load_falls_back_to_cpu_seconds_and_says_why():
    # The run of 2026-12-01: the simulations differed x3.7 and the printed wall ratio (0.547)
    # was meaningless; the CPU ratio (1.15) is what the verdict must rest on.
    v = target_verdicts(_row(3.7, 0.9, 3.67, 0.547, 1.15))
    assert v["sums"]["basis"] == "cpu" and v["sums"]["value"] == 1.15 and v["sums"]["met"]
    assert "x3.7" in v["sums"]["text"] and "load moved" in v["sums"]["text"]
    assert v["warm"]["basis"] == "cpu" and not v["warm"]["met"]


def test_boundaries():
    assert target_verdicts(_row(SPREAD_LIMIT, TARGET, 9.0))["warm"] | {"text": ""} == {
        "met": True, "basis": "wall", "value": TARGET, "text": ""}
    assert "sums" not in target_verdicts(_row(1.0, 1.0, 1.0))
