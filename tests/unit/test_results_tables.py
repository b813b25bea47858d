"""scripts/results_tables.py: a seed that diverged (perplexity past 1e5, or NaN) is named as
such in a cell, never averaged into a mean or a paired difference."""

import importlib.util
import math

import pytest

from tests.integration.conftest import REPO

spec = importlib.util.spec_from_file_location("results_tables", REPO / "scripts" / "results_tables.py")
rt = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rt)


def test_nan_and_huge_perplexities_are_diverged_runs():
    assert rt.cell([219.4, 1e304, math.nan], ".1f") == "diverged in 2 of 3"
    assert rt.cell([219.4, math.nan, 230.0], ".1f") == "diverged in 1 of 3"
    # Finite runs get the mean and the 95% t half-width (scipy: t(0.975, 2) = 4.303)
    sd = 5.0
    assert rt.cell([195.0, 200.0, 205.0], ".1f") == f"200.0 ± {4.302652729911275 * sd / math.sqrt(3):.1f}"
    assert not rt.diverged(None) and rt.diverged(math.nan) and rt.diverged(-2e5)


def _row(model, seed, top1, eps=None, z=0.0, clip=None):
    return {"model": model, "seed": seed, "smoothed_word_top1": top1, "eval_word_top1": top1,
            "eval_word_top3": 0.1, "eval_perplexity": 200.0, "target_epsilon": eps,
            "noise_multiplier": z, "mechanism": "dp_fedavg" if clip else None,
            "neighboring_relation": "ADD_OR_REMOVE_ONE" if clip else None, "clip_norm": clip,
            "adaptive_clipping": bool(clip and clip < 1e5)}


# Constant per-seed differences (exact expected values): scipy warns that their spread is 0.
@pytest.mark.filterwarnings("ignore:Precision loss occurred")
def test_frontier_keeps_clip_settings_and_the_aggregation_only_reference_apart(monkeypatch, capsys):
    rows = []
    for s in range(3):
        rows += [_row("cifg", s, 0.030 + 0.001 * s),                          # non-private
                 _row("cifg", s, 0.020 + 0.001 * s, z=1e-12, clip=1e6),        # aggregation only
                 _row("cifg", s, 0.010 + 0.001 * s, z=1e-6, clip=1.0),         # clipping only, clip 1
                 _row("cifg", s, 0.015 + 0.001 * s, z=1e-6, clip=3.0),         # clipping only, clip 3
                 _row("cifg", s, 0.009 + 0.002 * s, eps=16.0, z=0.3, clip=1.0),
                 _row("cifg", s, 0.012 + 0.002 * s, eps=16.0, z=0.3, clip=3.0)]
    assert [rt.frontier_point(r) for r in rows[:6]] == [
        "non-private", "aggregation only", "clipping only", "clipping only", "epsilon 16", "epsilon 16"]
    assert rt.clip_groups(rows) == ["clip 1", "clip 3"]
    monkeypatch.setattr(rt, "load_points", lambda d: rows if d.name == "all" else [])
    rt.cmd_frontier(type("A", (), {"sweep_dirs": ["all"], "plot": None})())
    out = capsys.readouterr().out
    # Paired differences computed within one clip setting, never across (exact: constant
    # per-seed differences have a zero-width CI)
    assert "CIFG: aggregation only − non-private: -0.0100" in out
    assert "CIFG: clipping only, clip 1 − aggregation only: -0.0100" in out
    assert "CIFG: clipping only, clip 3 − aggregation only: -0.0050" in out
    assert "CIFG: epsilon 16, clip 3 − clipping only, clip 3: -0.0020" in out
    assert "CIFG: clipping only, clip 3 − clipping only, clip 1: +0.0050" in out
    assert "CIFG: epsilon 16, clip 1 − clipping only, clip 1: -0.0000" in out or \
        "CIFG: epsilon 16, clip 1 − clipping only, clip 1: +0.0000" in out
    # The table has a clip column and one row per clip setting at epsilon 16
    assert "| clip |" in out.splitlines()[0]
    assert sum(1 for line in out.splitlines() if "| 16 |" in line) == 2


def test_a_diverged_run_stops_every_comparison_it_is_in(monkeypatch, capsys):
    # Its accuracy is a dead model's (noise around 0), so not even top-1 is compared.
    ok = [_row("cifg", s, 0.03, clip=None) | {"eval_perplexity": 180.0} for s in range(3)]
    si = [_row("si_cifg", s, 0.01, clip=None) | {"eval_perplexity": 200.0 if s else math.nan} for s in range(3)]
    lines = rt.pair_lines(ok + si, ["si_cifg", "cifg"])
    assert lines and all(line.endswith("not compared (a run diverged)") for line in lines)
    agg = [_row("si_cifg", s, 0.02, z=1e-12, clip=1e6) | {"eval_perplexity": 1e300 if s == 2 else 220.0}
           for s in range(3)]
    monkeypatch.setattr(rt, "load_points", lambda d: [r | {"eval_perplexity": 190.0} for r in si] + agg)
    rt.cmd_frontier(type("A", (), {"sweep_dirs": ["x"], "plot": None})())
    assert "SI-CIFG: aggregation only − non-private: not compared (diverged in seed 2)" in capsys.readouterr().out


def test_a_diverged_run_marks_every_cell_of_its_row_and_is_never_the_best_rate():
    rows = [{"model": "cifg", "seed": s, "lr": lr, "smoothed_word_top1": top1, "eval_word_top1": top1,
             "eval_word_top3": 0.1, "eval_perplexity": ppl}
            for s in range(3) for lr, top1, ppl in ((1.0, 0.03, 180.0), (3.0, 0.05, math.nan if s == 1 else 170.0))]
    out = rt.table(rows, [("model", lambda r: r["model"]), ("lr", lambda r: r["lr"])])
    (row3,) = [line for line in out.splitlines() if "| 3 |" in line]
    assert row3.count("diverged in 1 of 3") == 4  # every metric column, not only perplexity
    # lr 3 has the higher mean top-1, but a seed diverged there
    assert rt.best_by(rows, lambda r: r["model"], lambda r: r["lr"]) == {"cifg": 1.0}


@pytest.mark.filterwarnings("ignore:Precision loss occurred")
def test_points_of_two_stated_deployments_are_compared_apart(monkeypatch, capsys):
    rows = []
    for s in range(3):
        for m, top1 in ((1000, 0.010), (100, 0.020)):
            rows += [_row("cifg", s, top1 + 0.001 * s, eps=e, z=0.5, clip=1.0) | {"noise_cohort_size": m}
                     for e in (1.0, 16.0)]
        rows += [_row("cifg", s, 0.010 + 0.001 * s, z=1e-6, clip=1.0) | {"noise_cohort_size": 1000}]
    assert rt.deploy_label(rows[0]) == "m' 1000" and rt.deploy_label(rows[-1]) == ""  # references: none
    monkeypatch.setattr(rt, "load_points", lambda d: rows)
    rt.cmd_frontier(type("A", (), {"sweep_dirs": ["x"], "plot": None})())
    out = capsys.readouterr().out
    assert "| noise cohort |" in out.splitlines()[0]
    # Within one deployment, never across; the clipping-only reference serves both
    assert "CIFG: epsilon 1, m' 100 − clipping only: +0.0100" in out
    assert "CIFG: epsilon 1, m' 1000 − clipping only: +0.0000" in out or \
        "CIFG: epsilon 1, m' 1000 − clipping only: -0.0000" in out
    assert "CIFG: epsilon 1, m' 100 − epsilon 1, m' 1000: +0.0100" in out
