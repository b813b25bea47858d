"""Sweep files: the grid they define, and clear errors for bad ones."""

import dataclasses

import pytest

from fl_sim.config import ConfigError
from fl_sim.app.sweep import frontier_table, load_sweep


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
    # z = 0 is allowed (clipping without noise, the audit sweep's point); z < 0 is not.
    ('[sweep]\nname = "x"\nexperiment = "base.toml"\nnoise_multipliers = [-1]\n', "numbers >= 0"),
    ('[sweep]\nname = "x"\nexperiment = "base.toml"\ntarget_epsilons = [0]\n', "numbers > 0"),
    ('[sweep]\nname = "x"\nexperiment = "base.toml"\nnoise_multipliers = [1]\nmodels = ["rnn"]\n', "sweep.models"),
    ('[sweep]\nname = "x"\nexperiment = "base.toml"\nnoise_multipliers = [1]\nset = ["client.lr=-1"]\n', "client.lr"),
    ('[sweep]\nname = "x"\nexperiment = "base.toml"\nnoise_multipliers = [1]\nnoise = 2\n', "unknown key sweep.noise"),
    ('[sweep]\nname = "x"\nexperiment = "missing.toml"\nnoise_multipliers = [1]\n', "no such experiment file"),
    ('[sweep]\nname = "x"\nexperiment = "base.toml"\nnoise_multipliers = [1]\n'
     '[sweep.model_set]\ntransformer = ["client.lr=1.0"]\n', "sweep.model_set"),
    ('[sweep]\nname = "x"\nexperiment = "base.toml"\nnoise_multipliers = [1]\n'
     '[sweep.model_set]\ncifg = ["client.lr=-1"]\n', "client.lr"),
])
def test_bad_sweeps(tmp_path, body, needle):
    with pytest.raises(ConfigError) as e:
        load_sweep(write(tmp_path, body))
    assert needle in str(e.value)


def test_model_set_applies_to_its_own_model_only(tmp_path):
    sweep = load_sweep(write(tmp_path, '[sweep]\nname = "x"\nexperiment = "base.toml"\n'
                                       'target_epsilons = [4]\nseeds = [3, 4]\n'
                                       '[sweep.model_set]\ncifg = ["client.lr=0.3"]\n'))
    lr = {p.name: sweep.point_config(p).client.lr for p in sweep.points}
    base = sweep.point_config(sweep.points[0]).client.lr
    assert lr == {"si_cifg-nonprivate-s3": base, "si_cifg-nonprivate-s4": base,
                  "si_cifg-eps4-s3": base, "si_cifg-eps4-s4": base,
                  "cifg-nonprivate-s3": 0.3, "cifg-nonprivate-s4": 0.3,
                  "cifg-eps4-s3": 0.3, "cifg-eps4-s4": 0.3}
    assert base != 0.3
    assert sweep.point_config(sweep.points[-1]).experiment.seed == 4


def test_frontier_table_marks_the_reference():
    rows = [{"model": "cifg", "private": False, "noise_multiplier": None, "epsilon_rdp": None,
             "epsilon_pld": None, "delta": None, "accuracy": 0.2, "accuracy_no_oov_eos": 0.21, "perplexity": 90.0}]
    assert "non-private | inf | inf" in frontier_table(rows)


def test_frontier_plot_before_and_after_private_points(tmp_path):
    # The sweep redraws after every point, so the first plot has only the reference run.
    from fl_sim.app.sweep import frontier_plot

    ref = {"model": "cifg", "private": False, "noise_multiplier": None, "epsilon_rdp": None,
           "epsilon_pld": None, "delta": None, "accuracy": 0.2, "accuracy_no_oov_eos": 0.21,
           "perplexity": 90.0, "baseline_accuracy": 0.08}
    assert frontier_plot([ref], tmp_path / "a.png").stat().st_size > 0
    priv = {**ref, "private": True, "noise_multiplier": 1.0, "epsilon_rdp": 2.5, "accuracy": 0.1,
            "perplexity": 300.0}
    assert frontier_plot([ref, priv], tmp_path / "b.png").stat().st_size > 0
    # A z = 0 point (epsilon = inf) alone, as the audit sweep's first point: nothing to draw
    # on a log axis, so it must not be one.
    z0 = {**priv, "noise_multiplier": 0.0, "epsilon_rdp": float("inf"), "epsilon_pld": float("inf")}
    assert frontier_plot([z0], tmp_path / "c.png").stat().st_size > 0


def test_seeds_repeat_every_point_and_set_the_seed(tmp_path):
    sweep = load_sweep(write(tmp_path, '[sweep]\nname = "x"\nexperiment = "base.toml"\nmodels = ["cifg"]\n'
                                       'noise_multipliers = [1]\nseeds = [3, 0]\n'))
    assert [p.name for p in sweep.points] == ["cifg-nonprivate-s3", "cifg-nonprivate-s0",
                                              "cifg-z1-s3", "cifg-z1-s0"]
    assert [sweep.point_config(p).experiment.seed for p in sweep.points] == [3, 0, 3, 0]
    for bad in ("[]", "[1, 1]", "[-1]", '["a"]', "[1.5]", "true"):
        with pytest.raises(ConfigError, match="sweep.seeds"):
            load_sweep(write(tmp_path, '[sweep]\nname = "x"\nexperiment = "base.toml"\n'
                                       f'noise_multipliers = [1]\nseeds = {bad}\n'))


def test_over_seeds_means_and_sample_sd(tmp_path):
    from fl_sim.app.sweep import frontier_plot, over_seeds

    def row(seed, acc, ppl, private=True):
        return {"point": f"p-s{seed}", "model": "cifg", "seed": seed, "private": private,
                "noise_multiplier": 1.0 if private else None, "target_epsilon": None,
                "epsilon_rdp": 2.0 if private else None, "epsilon_pld": 1.5 if private else None,
                "delta": 1e-5, "rounds": 2, "accuracy": acc, "accuracy_no_oov_eos": acc,
                "perplexity": ppl, "eval_loss": 1.0, "baseline_accuracy": 0.05, "run_dir": "x"}

    rows = [row(0, 0.10, 100.0), row(1, 0.14, 120.0), row(2, 0.12, 110.0), row(0, 0.2, 80.0, False)]
    private, ref = over_seeds(rows)
    assert private["n"] == 3 and private["accuracy"] == pytest.approx(0.12)
    assert private["accuracy_sd"] == pytest.approx(0.02) and private["perplexity_sd"] == pytest.approx(10.0)
    assert ref["n"] == 1 and ref["accuracy_sd"] is None and "seed" not in ref
    text = frontier_table([private, ref])
    assert "0.1200 ± 0.0200" in text and "110.0 ± 10.0" in text and text.splitlines()[0].endswith("seeds |")
    assert frontier_plot([private, ref], tmp_path / "f.png").stat().st_size > 0


def test_deployment_sweep_loads_and_every_table_and_plot_names_the_deployment(tmp_path):
    from fl_sim.app.sweep import frontier_plot, frontier_xlabel

    # The shipped deployment-scale sweep (hours long; only loaded here)
    sweep = load_sweep("experiments/sweeps/dp_frontier_deploy.toml")
    assert len(sweep.points) == 2 * (1 + 5) * 3
    cfg = sweep.point_config(next(p for p in sweep.points if p.target_epsilon == 2.0))
    p = cfg.privacy
    assert (p.target_epsilon, p.delta, p.noise_cohort_size, p.accounting_population) == (2.0, 1e-6, 1000, 10**6)
    # One vocabulary for every point, the non-private reference too.
    assert {sweep.point_config(q).data.vocab_source for q in sweep.points} == {"public"}
    rows = [{"model": "cifg", "private": True, "noise_multiplier": 0.8, "epsilon_rdp": 2.0,
             "epsilon_pld": 1.1, "delta": 1e-6, "accuracy": 0.1, "accuracy_no_oov_eos": 0.05,
             "perplexity": 200.0, "baseline_accuracy": 0.08, "epsilon_for": "deployment N'=1,000,000, m'=5,000",
             "run_epsilon_rdp": 5.2e5, "run_delta": 1e-6},
            {"model": "cifg", "private": False, "noise_multiplier": None, "epsilon_rdp": None,
             "epsilon_pld": None, "delta": None, "accuracy": 0.2, "accuracy_no_oov_eos": 0.1,
             "perplexity": 90.0, "baseline_accuracy": 0.08}]
    table = frontier_table(rows)
    assert "epsilon (RDP) for deployment N'=1,000,000, m'=5,000" in table.splitlines()[0]
    assert "| 5.2e+05 |" in table and "not for the runs as executed" in table
    label = frontier_xlabel(rows)
    assert "for the stated deployment N'=1,000,000" in label and "5.2e+05" in label
    assert frontier_plot(rows, tmp_path / "f.png").stat().st_size > 0


def test_audit_sweep_puts_epsilon_emp_beside_epsilon(tmp_path):
    from fl_sim.app.sweep import audit_plot, over_seeds

    # The shipped audit sweep: z in {0, 0.5, 1, 2} on the demo model, canaries on every point.
    sweep = load_sweep("experiments/sweeps/audit.toml")
    assert [p.noise_multiplier for p in sweep.points] == [0.0, 0.5, 1.0, 2.0]
    cfgs = [sweep.point_config(p) for p in sweep.points]
    assert all(c.audit.canaries > 0 and c.privacy.enabled for c in cfgs)
    assert cfgs[0].privacy.noise_multiplier == 0.0
    row = {"model": "si_cifg", "private": True, "noise_multiplier": 1.0, "epsilon_rdp": 2.0,
           "epsilon_pld": 1.3, "delta": 1e-3, "accuracy": 0.1, "accuracy_no_oov_eos": 0.05,
           "perplexity": 200.0, "baseline_accuracy": 0.08, "target_epsilon": None,
           "epsilon_emp": 0.88, "epsilon_emp_ci_low": 0.74, "epsilon_emp_ci_high": 1.22}
    z0 = {**row, "noise_multiplier": 0.0, "epsilon_rdp": float("inf"), "epsilon_pld": float("inf"),
          "epsilon_emp": 100.0, "epsilon_emp_ci_low": 100.0, "epsilon_emp_ci_high": 100.0}
    table = frontier_table([z0, row])
    assert "epsilon_emp, canary audit (95% CI)" in table.splitlines()[0]
    assert "| 0.88 (0.74-1.22) |" in table and "| >= 100 (cap) (100-100) |" in table
    assert "not a guarantee" in table
    assert audit_plot([z0, row], tmp_path / "audit.png").stat().st_size > 0
    # Over seeds: the mean and sd of the estimates.
    (mean,) = over_seeds([{**row, "point": "a", "seed": 0, "run_dir": "a"},
                          {**row, "point": "b", "seed": 1, "run_dir": "b", "epsilon_emp": 1.08}])
    assert mean["epsilon_emp"] == pytest.approx(0.98) and "± 0.14" in frontier_table([mean])
    # A sweep without an audit has no such column.
    assert "epsilon_emp" not in frontier_table([{**row, "epsilon_emp": None}])


def test_non_private_reference_of_an_audited_sweep_has_no_canaries(tmp_path):
    sweep = load_sweep(write(tmp_path, '[sweep]\nname = "x"\nexperiment = "base.toml"\n'
                                       'models = ["cifg"]\nnoise_multipliers = [0, 1]\n'
                                       'set = ["audit.canaries=10"]\n'))
    assert [p.name for p in sweep.points] == ["cifg-nonprivate", "cifg-z0", "cifg-z1"]
    ref, z0, _ = (sweep.point_config(p) for p in sweep.points)
    assert not ref.privacy.enabled and ref.audit.canaries == 0
    assert z0.privacy.enabled and z0.privacy.noise_multiplier == 0 and z0.audit.canaries == 10


def test_dp_ftrl_frontier_and_its_twin_load_and_the_table_names_the_relation():
    from fl_sim.privacy.deployment import DeploymentScale
    from strategies.dp_ftrl import restart_rounds

    ftrl = load_sweep("experiments/sweeps/dp_ftrl_frontier.toml")
    twin = load_sweep("experiments/sweeps/dp_fedavg_fixed_frontier.toml")
    # Both reuse dp_frontier_deploy's non-private reference: it is their experiment with
    # privacy off (everything but the name and the [privacy] table is the same)
    assert len(ftrl.points) == len(twin.points) == 2 * 5 * 3
    ref = load_sweep("experiments/sweeps/dp_frontier_deploy.toml")
    (r,) = [ref.point_config(p) for p in ref.points if p.name == "cifg-nonprivate-s0"]
    for sweep in (ftrl, twin):
        (t,) = [sweep.point_config(p) for p in sweep.points if p.name == "cifg-eps4-s0"]
        assert not r.privacy.enabled and r.replace(experiment=t.experiment, privacy=t.privacy) == t
    a = ftrl.point_config(next(p for p in ftrl.points if p.target_epsilon == 4.0))
    b = twin.point_config(next(p for p in twin.points if p.target_epsilon == 4.0))
    assert (a.privacy.mechanism, b.privacy.mechanism) == ("dp_ftrl", "dp_fedavg")
    # Only the mechanism differs between the twins (the experiment name aside)
    assert a.replace(privacy=b.privacy, experiment=b.experiment) == b
    # The demo's 1,080 training clients, 8 per round: one tree of 135 >= 40 rounds
    scale = DeploymentScale.from_config(a.privacy, 1080, 8)
    assert restart_rounds(a.privacy, 1080, 8, scale) == 135 >= a.experiment.rounds == 40
    rows = [{"model": "cifg", "private": True, "noise_multiplier": 0.8, "epsilon_rdp": 4.0,
             "epsilon_pld": None, "delta": 1e-4, "mechanism": m, "neighboring_relation": rel,
             "accuracy": 0.1, "accuracy_no_oov_eos": 0.05, "perplexity": 200.0}
            for m, rel in (("dp_ftrl", "REPLACE_SPECIAL"), ("dp_fedavg", "REPLACE_ONE"))]
    table = frontier_table(rows)
    assert "mechanism (neighbouring relation)" in table.splitlines()[0]
    assert "dp_ftrl (REPLACE_SPECIAL)" in table and "dp_fedavg (REPLACE_ONE)" in table


def test_table_d2_sweeps_differ_from_table_d_only_where_they_say():
    # Table d2 reuses table (d)'s non-private and clipping-only references: the m' = 100
    # frontier may differ from (d) only in privacy.noise_cohort_size, the clip-3 reference from
    # (d)'s clipping-only one only in privacy.clip_norm (and the experiment's names).
    ref = load_sweep("experiments/sweeps/dp_frontier_deploy.toml")
    (r,) = [ref.point_config(p) for p in ref.points if p.name == "cifg-eps4-s0"]
    (nonpriv,) = [ref.point_config(p) for p in ref.points if p.name == "cifg-nonprivate-s0"]
    m100 = load_sweep("experiments/sweeps/dp_frontier_m100.toml")
    assert len(m100.points) == 2 * 3 * 3
    (t,) = [m100.point_config(p) for p in m100.points if p.name == "cifg-eps4-s0"]
    assert t.privacy.noise_cohort_size == 100
    assert r.replace(experiment=t.experiment, privacy=dataclasses.replace(r.privacy, noise_cohort_size=100)) == t
    assert nonpriv.replace(experiment=t.experiment, privacy=t.privacy) == t
    clip_d = load_sweep("experiments/sweeps/dp_clip_only.toml")
    clip3 = load_sweep("experiments/sweeps/dp_clip_only_clip3.toml")
    assert len(clip3.points) == 2 * 3
    (c,) = [clip_d.point_config(p) for p in clip_d.points if p.model == "cifg" and p.seed == 0]
    (c3,) = [clip3.point_config(p) for p in clip3.points if p.model == "cifg" and p.seed == 0]
    assert c3.privacy.clip_norm == 3.0
    assert c.replace(experiment=c3.experiment, privacy=dataclasses.replace(c.privacy, clip_norm=3.0)) == c3


def test_aggregation_only_reference_differs_from_clip_only_in_clip_and_noise():
    agg = load_sweep("experiments/sweeps/dp_aggregation_only.toml")
    clip = load_sweep("experiments/sweeps/dp_clip_only.toml")
    (a,) = [agg.point_config(p) for p in agg.points if p.model == "cifg" and p.seed == 0]
    (c,) = [clip.point_config(p) for p in clip.points if p.model == "cifg" and p.seed == 0]
    assert len(agg.points) == 6
    # No update reaches the clip, and the noise on the mean (z C / m') is 1e-9
    assert (a.privacy.clip_norm, a.privacy.adaptive_clipping) == (1e6, False)
    assert a.privacy.noise_multiplier * a.privacy.clip_norm / a.privacy.noise_cohort_size <= 1e-9
    assert c.replace(experiment=a.experiment, privacy=dataclasses.replace(
        c.privacy, clip_norm=1e6, adaptive_clipping=False, noise_multiplier=1e-12)) == a
