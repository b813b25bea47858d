"""Sweep files: the grid they define, and clear errors for bad ones."""

import pytest

from fl_sim.config import ConfigError
from fl_sim.sweep import frontier_table, load_sweep


def write(tmp_path, body, name="s.toml"):
    (tmp_path / "base.toml").write_text('[experiment]\nname = "b"\ncompare = ["si_cifg", "cifg"]\n'
                                        '[data]\nsource = "synthetic"\n')
    p = tmp_path / name
    p.write_text(body)
    return p


def test_grid_points_and_overrides(tmp_path):
    sweep = load_sweep(write(tmp_path, '[sweep]\nname = "x"\nexperiment = "base.toml"\n'
                                       'noise_multipliers = [0.5, 1]\nset = ["experiment.rounds=3"]\n'))
    assert [p.name for p in sweep.points] == ["si_cifg-nonprivate", "si_cifg-z0.5", "si_cifg-z1",
                                              "cifg-nonprivate", "cifg-z0.5", "cifg-z1"]
    cfg = sweep.point_config(sweep.points[2])
    assert cfg.model.kind == "si_cifg" and cfg.privacy.enabled and cfg.privacy.noise_multiplier == 1.0
    assert cfg.experiment.rounds == 3 and cfg.experiment.compare == ()
    assert not sweep.point_config(sweep.points[0]).privacy.enabled


@pytest.mark.parametrize("body,needle", [
    ('[sweep]\nname = "x"\nexperiment = "base.toml"\n', "exactly one of"),
    ('[sweep]\nname = "x"\nexperiment = "base.toml"\nnoise_multipliers = [0]\n', "numbers > 0"),
    ('[sweep]\nname = "x"\nexperiment = "base.toml"\nnoise_multipliers = [1]\nmodels = ["rnn"]\n', "sweep.models"),
    ('[sweep]\nname = "x"\nexperiment = "base.toml"\nnoise_multipliers = [1]\nset = ["client.lr=-1"]\n', "client.lr"),
    ('[sweep]\nname = "x"\nexperiment = "base.toml"\nnoise_multipliers = [1]\nnoise = 2\n', "unknown key sweep.noise"),
    ('[sweep]\nname = "x"\nexperiment = "missing.toml"\nnoise_multipliers = [1]\n', "no such experiment file"),
])
def test_bad_sweeps(tmp_path, body, needle):
    with pytest.raises(ConfigError) as e:
        load_sweep(write(tmp_path, body))
    assert needle in str(e.value)


def test_frontier_table_marks_the_reference():
    rows = [{"model": "cifg", "private": False, "noise_multiplier": None, "epsilon_rdp": None,
             "epsilon_pld": None, "delta": None, "accuracy": 0.2, "accuracy_no_oov_eos": 0.21, "perplexity": 90.0}]
    assert "non-private | inf | inf" in frontier_table(rows)


def test_frontier_plot_before_and_after_private_points(tmp_path):
    # The sweep redraws after every point, so the first plot has only the reference run.
    from fl_sim.sweep import frontier_plot

    ref = {"model": "cifg", "private": False, "noise_multiplier": None, "epsilon_rdp": None,
           "epsilon_pld": None, "delta": None, "accuracy": 0.2, "accuracy_no_oov_eos": 0.21,
           "perplexity": 90.0, "baseline_accuracy": 0.08}
    assert frontier_plot([ref], tmp_path / "a.png").stat().st_size > 0
    priv = {**ref, "private": True, "noise_multiplier": 1.0, "epsilon_rdp": 2.5, "accuracy": 0.1,
            "perplexity": 300.0}
    assert frontier_plot([ref, priv], tmp_path / "b.png").stat().st_size > 0
