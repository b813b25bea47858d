"""experiment.seeds: validation, overrides, resolved configs, sweeps, and the per-seed
statistics of a summary recomputed with scipy."""

import numpy as np
import pytest
from scipy import stats as sps

from fl_sim import comparison
from fl_sim.app.sweep import load_sweep
from fl_sim.config import ConfigError, dumps_toml, from_dict, load_experiment


def exp(tmp_path, body):
    p = tmp_path / "e.toml"
    p.write_text(body)
    return p


def test_seeds_parse_and_run_seeds(tmp_path):
    cfg = load_experiment(exp(tmp_path, "[experiment]\nseeds = [0, 1, 2]\n"))
    assert cfg.experiment.seeds == (0, 1, 2) and cfg.experiment.run_seeds == (0, 1, 2)
    one = load_experiment(exp(tmp_path, "[experiment]\nseed = 4\n"))
    assert one.experiment.seeds == () and one.experiment.run_seeds == (4,)


@pytest.mark.parametrize("body,needle", [
    ("[experiment]\nseed = 0\nseeds = [0, 1]\n", "are both set"),
    ("[experiment]\nseeds = [1, 1]\n", "distinct"),
    ("[experiment]\nseeds = [-1]\n", "experiment.seeds[0] = -1"),
    ("[experiment]\nseeds = 3\n", "expected list of int"),
])
def test_bad_seeds(tmp_path, body, needle):
    with pytest.raises(ConfigError) as e:
        load_experiment(exp(tmp_path, body))
    assert needle in str(e.value) and "e.toml" in str(e.value)


def test_an_override_of_one_replaces_the_files_other(tmp_path):
    path = exp(tmp_path, "[experiment]\nseed = 3\n")
    assert load_experiment(path, ["experiment.seeds=[0,1]"]).experiment.run_seeds == (0, 1)
    path = exp(tmp_path, "[experiment]\nseeds = [0, 1]\n")
    assert load_experiment(path, ["experiment.seed=5"]).experiment.run_seeds == (5,)
    with pytest.raises(ConfigError, match="both set"):
        load_experiment(path, ["experiment.seed=5", "experiment.seeds=[2,3]"])


def test_resolved_config_reads_back(tmp_path):
    for body in ("[experiment]\nseeds = [0, 2]\n", "[experiment]\nseed = 7\n"):
        cfg = load_experiment(exp(tmp_path, body))
        import tomllib
        again = from_dict(tomllib.loads(dumps_toml(cfg)))
        assert again == cfg


def test_sweep_takes_the_base_experiments_seeds(tmp_path):
    (tmp_path / "base.toml").write_text('[experiment]\nname = "b"\nseeds = [0, 1]\n'
                                        '[data]\nsource = "synthetic"\n')
    (tmp_path / "s.toml").write_text('[sweep]\nname = "x"\nexperiment = "base.toml"\n'
                                     'models = ["cifg"]\nnoise_multipliers = [1]\n')
    sweep = load_sweep(tmp_path / "s.toml")
    assert [p.name for p in sweep.points] == ["cifg-nonprivate-s0", "cifg-nonprivate-s1",
                                              "cifg-z1-s0", "cifg-z1-s1"]
    cfg = sweep.point_config(sweep.points[1])
    assert cfg.experiment.seeds == () and cfg.experiment.seed == 1
    # The sweep's own seeds key stays supported and wins.
    (tmp_path / "s2.toml").write_text('[sweep]\nname = "x"\nexperiment = "base.toml"\n'
                                      'models = ["cifg"]\nnoise_multipliers = [1]\nseeds = [5]\n')
    assert [p.seed for p in load_sweep(tmp_path / "s2.toml").points] == [5, 5]


def _rows():
    a = [0.171, 0.166, 0.180]
    b = [0.160, 0.158, 0.175]
    rows = []
    for seed, (x, y) in enumerate(zip(a, b)):
        for model, v in (("si_cifg", x), ("cifg", y)):
            final = {"eval_word_top1": v, "eval_word_top3": v + 0.1, "smoothed_word_top1": v - 0.01,
                     "eval_accuracy_no_oov_eos": v + 0.05, "eval_accuracy": v, "eval_perplexity": 100 - 100 * v,
                     "eval_loss": 2.0, "baseline_constant_word_top1": 0.034}
            rows.append(comparison.row(final, model=model, seed=seed, run_dir="x"))
    return rows, np.array(a), np.array(b)


def test_summarize_rows_against_scipy():
    rows, a, b = _rows()
    s = comparison.summarize_rows(rows, ["si_cifg", "cifg"])
    st = s["stats"]["si_cifg"]["word_top1"]
    lo, hi = sps.t.interval(0.95, 2, loc=a.mean(), scale=sps.sem(a))
    assert st["mean"] == pytest.approx(a.mean()) and st["sd"] == pytest.approx(a.std(ddof=1))
    assert (st["ci_low"], st["ci_high"]) == pytest.approx((lo, hi))
    (d,) = [c for c in s["comparisons"] if c["metric"] == "word_top1"]
    ci = sps.ttest_rel(a, b).confidence_interval(0.95)
    assert (d["ci_low"], d["ci_high"]) == pytest.approx((ci.low, ci.high))
    assert d["seeds"] == [0, 1, 2] and d["verdict"] == "better"
    assert d["text"].startswith("word top-1: SI-CIFG − CIFG: +0.0080 ± ")
    assert d["text"].endswith("(95% CI, n = 3): better")
    # Perplexity: lower is better, so SI-CIFG's lower perplexity is "better" as well.
    (p,) = [c for c in s["comparisons"] if c["metric"] == "perplexity"]
    assert p["mean"] < 0 and p["verdict"] == "better"
    assert s["baselines"]["constant_word_top1"]["mean"] == pytest.approx(0.034)
    text = comparison.seeds_table({**s})
    assert "| SI-CIFG | 3 |" in text and "n = 3" in text
