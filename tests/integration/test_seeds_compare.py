"""A 2-seed SI-CIFG vs CIFG smoke comparison end to end, its summary recomputed with scipy
from the per-seed rows and the seed directories' metrics.jsonl, and fl-sim compare on it."""

import csv
import json

import numpy as np
import pytest
from scipy import stats as sps

from tests.integration.conftest import run_cli, run_dirs

SMOKE = "experiments/smoke.toml"
MODELS = ("si_cifg", "cifg")
# The summary and the references compute the same float64 formulas from the same values
# (read back from JSON, which round-trips floats exactly); 1e-9 allows for the order of
# a handful of additions.
TOL = 1e-9


def final_row(path):
    rows = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["type"] == "final"
    return rows[-1]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    out = tmp_path_factory.mktemp("seeds")
    proc = run_cli("run", SMOKE, "--rounds", 2, "--out", out, "--set", "experiment.seeds=[0,1]",
                   "--set", 'experiment.compare=["si_cifg","cifg"]')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_dir,) = run_dirs(out, "smoke")
    return run_dir, proc


def test_layout_and_per_seed_rows_come_from_metrics_jsonl(seeded):
    run_dir, proc = seeded
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["seeds"] == [0, 1] and summary["seed"] is None and summary["headline"] == "word_top1"
    for name in ("config.resolved.toml", "summary.md", "plots/learning_curves.png"):
        assert (run_dir / name).exists(), name
    assert len(summary["per_seed"]) == 4
    for r in summary["per_seed"]:
        sub = run_dir / f"seed-{r['seed']}" / r["model"]
        assert r["run_dir"] == str(sub)
        f = final_row(sub)
        assert r["word_top1"] == f["eval_word_top1"] and r["word_top3"] == f["eval_word_top3"]
        assert r["perplexity"] == f["eval_perplexity"] and r["word_top1_se"] == f["eval_word_top1_se"]
        assert 0 <= f["eval_word_top1"] <= f["eval_word_top3"] <= 1
        assert f["baseline_constant_word_top1"] >= f["baseline_unigram_word_top1"]
        # Each seed directory is an ordinary single-seed comparison run.
        assert json.loads((sub.parent / "summary.json").read_text())["seed"] == r["seed"]
    assert "Verdict (paired by seed" in proc.stdout and "SI-CIFG − CIFG" in proc.stdout


def test_summary_statistics_recomputed_with_scipy(seeded):
    run_dir, _ = seeded
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = summary["per_seed"]
    for metric in ("word_top1", "word_top3", "perplexity"):
        vals = {m: np.array([r[metric] for r in sorted(rows, key=lambda r: r["seed"]) if r["model"] == m])
                for m in MODELS}
        for m in MODELS:
            st = summary["stats"][m][metric]
            x = vals[m]
            assert st["n"] == 2 and st["mean"] == pytest.approx(x.mean(), rel=TOL)
            assert st["sd"] == pytest.approx(x.std(ddof=1), rel=TOL, abs=1e-15)
            if x.std() > 0:
                lo, hi = sps.t.interval(0.95, 1, loc=x.mean(), scale=sps.sem(x))
                assert (st["ci_low"], st["ci_high"]) == pytest.approx((lo, hi), rel=TOL)
        (d,) = [c for c in summary["comparisons"] if c["metric"] == metric]
        diff = vals["si_cifg"] - vals["cifg"]
        assert d["differences"] == pytest.approx(list(diff), rel=TOL, abs=1e-15)
        assert d["mean"] == pytest.approx(diff.mean(), rel=TOL, abs=1e-15)
        if diff.std() > 0:
            ci = sps.ttest_rel(vals["si_cifg"], vals["cifg"]).confidence_interval(0.95)
            assert (d["ci_low"], d["ci_high"]) == pytest.approx((ci.low, ci.high), rel=TOL)
        assert d["verdict"] in ("better", "worse", "no significant difference")


def test_compare_on_two_runs_matches_their_metrics_jsonl(seeded, tmp_path):
    run_dir, _ = seeded
    # Two runs: the seed directories, each a comparison run in its own right.
    proc = run_cli("compare", run_dir / "seed-0", run_dir / "seed-1", "--metric", "word_top1",
                   "--metric", "eval_perplexity", "--out", tmp_path / "cmp")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert result["metrics"] == ["word_top1", "perplexity"]
    for m in MODELS:
        finals = [final_row(run_dir / f"seed-{s}" / m) for s in (0, 1)]
        g = result["groups"][m]
        assert g["seeds"] == [0, 1]
        assert g["word_top1"]["values"] == [f["eval_word_top1"] for f in finals]
        assert g["perplexity"]["mean"] == pytest.approx(np.mean([f["eval_perplexity"] for f in finals]), rel=TOL)
    (d,) = [x for x in result["differences"] if x["metric"] == "word_top1"]
    assert d["method"] == "paired by seed" and d["seeds"] == [0, 1]
    ref = [final_row(run_dir / f"seed-{s}" / "si_cifg")["eval_word_top1"]
           - final_row(run_dir / f"seed-{s}" / "cifg")["eval_word_top1"] for s in (0, 1)]
    assert d["differences"] == pytest.approx(ref, rel=TOL, abs=1e-15)
    with open(tmp_path / "cmp" / "compare.csv") as fh:
        csv_rows = list(csv.DictReader(fh))
    assert len(csv_rows) == 4
    for r in csv_rows:
        f = final_row(run_dir / f"seed-{r['seed']}" / r["model"])
        assert float(r["word_top1"]) == f["eval_word_top1"]
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 0
    assert "| SI-CIFG | 2 | 0, 1 |" in (tmp_path / "cmp" / "compare.md").read_text()
    # The multi-seed run directory itself gives the same groups.
    again = run_cli("compare", run_dir, "--out", tmp_path / "cmp2")
    assert again.returncode == 0, again.stdout + again.stderr
    g2 = json.loads((tmp_path / "cmp2" / "compare.json").read_text())["groups"]
    assert g2["cifg"]["word_top1"] == result["groups"]["cifg"]["word_top1"]


def test_compare_rejects_bad_input(seeded, tmp_path):
    run_dir, _ = seeded
    bad = run_cli("compare", tmp_path, "--out", tmp_path / "x")
    assert bad.returncode == 2 and "not a run directory" in bad.stderr
    bad = run_cli("compare", run_dir, "--metric", "nope", "--out", tmp_path / "x")
    assert bad.returncode == 2 and "unknown metric" in bad.stderr and "word_top1" in bad.stderr


def test_resume_skips_finished_seeds_and_gives_the_same_summary(seeded, tmp_path):
    import shutil

    run_dir, _ = seeded
    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    before = json.loads((copy / "summary.json").read_text())
    # As if killed after seed 0: seed 1 and the summary over seeds are not written yet.
    (copy / "summary.json").unlink()
    (copy / "seed-1" / "summary.json").unlink()
    proc = run_cli("run", "--resume", copy)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[seed 0] finished earlier" in proc.stdout
    after = json.loads((copy / "summary.json").read_text())
    strip = [{k: v for k, v in r.items() if k != "run_dir"} for r in before["per_seed"]]
    assert [{k: v for k, v in r.items() if k != "run_dir"} for r in after["per_seed"]] == strip
    assert after["comparisons"][0]["differences"] == before["comparisons"][0]["differences"]
