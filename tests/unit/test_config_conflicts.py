"""Non-finite numbers, names that would escape the output root, and contradicting settings."""

import pytest

from fl_sim.config import ConfigError, check_population, dumps_toml, load_experiment
from fl_sim.app.sweep import load_sweep

SMOKE = "experiments/smoke.toml"


def write(tmp_path, text, name="exp.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "+nan"])
def test_non_finite_floats_are_rejected(value):
    with pytest.raises(ConfigError, match=r"client\.lr = .*expected a finite number > 0"):
        load_experiment(SMOKE, [f"client.lr={value}"])
    with pytest.raises(ConfigError, match="finite"):
        load_experiment(SMOKE, [f"privacy.max_epsilon={value}"])


def test_an_override_error_names_the_override_and_a_file_error_the_file(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_experiment(SMOKE, ["client.lr=nan"])
    assert str(err.value).startswith(f"{SMOKE} (--set client.lr=nan): client.lr = nan")
    with pytest.raises(ConfigError) as err:
        load_experiment(write(tmp_path, "[client]\nlr = nan\n"))
    assert str(err.value).startswith(f"{tmp_path / 'exp.toml'}: client.lr = nan")
    assert "--set" not in str(err.value)


@pytest.mark.parametrize("name", ["../../../escaped", "/tmp/abs", "a/b", "..", ".", "",
                                  "a\\b", "tab\there", "nl\n"])
def test_names_that_are_not_one_directory_name(name):
    with pytest.raises(ConfigError, match="experiment.name = .*expected a plain name"):
        load_experiment(SMOKE, [f"experiment.name={name!r}".replace("'", '"')] if name else
                        ['experiment.name=""'])


def test_sweep_name_is_a_directory_name(tmp_path):
    (tmp_path / "base.toml").write_text((open(SMOKE).read()))
    sweep = write(tmp_path, '[sweep]\nname = "../up"\nexperiment = "base.toml"\n'
                            'noise_multipliers = [1.0]\n', "sweep.toml")
    with pytest.raises(ConfigError, match="sweep.name = '../up': expected a plain name"):
        load_sweep(sweep)
    sweep.write_text('[sweep]\nname = "ok"\nexperiment = "base.toml"\nnoise_multipliers = [nan]\n')
    with pytest.raises(ConfigError, match="finite"):
        load_sweep(sweep)


def test_noise_multiplier_and_target_epsilon_together():
    with pytest.raises(ConfigError, match="noise_multiplier = 0.3 and privacy.target_epsilon = 8.0"):
        load_experiment(SMOKE, ["privacy.enabled=true", "privacy.noise_multiplier=0.3",
                                "privacy.target_epsilon=8"])
    # The default noise multiplier is no conflict, nor a target epsilon of 0 (= off).
    cfg = load_experiment(SMOKE, ["privacy.enabled=true", "privacy.target_epsilon=8"])
    assert cfg.privacy.target_epsilon == 8.0
    load_experiment(SMOKE, ["privacy.enabled=true", "privacy.noise_multiplier=0.3",
                            "privacy.target_epsilon=0"])


def test_dp_and_pruning_keys_without_their_switch(tmp_path):
    with pytest.raises(ConfigError, match="privacy.max_epsilon = 8.0 is set but privacy.enabled is false"):
        load_experiment(SMOKE, ["privacy.max_epsilon=8"])
    with pytest.raises(ConfigError, match="privacy.noise_multiplier"):
        load_experiment(write(tmp_path, "[privacy]\nnoise_multiplier = 0.5\n"))
    with pytest.raises(ConfigError, match="pruning.target_sparsity = 0.5 is set but pruning.enabled"):
        load_experiment(SMOKE, ["pruning.target_sparsity=0.5"])
    # Turned off on purpose: a DP experiment run without DP for comparison.
    dp = write(tmp_path, "[privacy]\nenabled = true\nnoise_multiplier = 0.5\nmax_epsilon = 8.0\n", "dp.toml")
    assert not load_experiment(dp, ["privacy.enabled=false"]).privacy.enabled


def test_a_resolved_config_only_counts_its_overrides(tmp_path):
    cfg = load_experiment(SMOKE, ["privacy.enabled=true", "privacy.target_epsilon=8"])
    resolved = write(tmp_path, dumps_toml(cfg), "config.resolved.toml")  # every key written
    assert load_experiment(resolved) == cfg
    with pytest.raises(ConfigError, match="noise_multiplier = 0.3 and privacy.target_epsilon = 2.0"):
        load_experiment(resolved, ["privacy.noise_multiplier=0.3", "privacy.target_epsilon=2"])
    # The same text under another name is a user's file: every key in it is the user's.
    with pytest.raises(ConfigError, match="noise_multiplier = 1.0 and privacy.target_epsilon"):
        load_experiment(write(tmp_path, dumps_toml(cfg), "mine.toml"))


def test_sweeps_set_privacy_for_their_points():
    sweep = load_sweep("experiments/sweeps/dp_frontier.toml")
    for point in sweep.points:
        assert sweep.point_config(point).privacy.enabled == point.private


def test_population_cap_is_a_warning_and_min_clients_an_error(tmp_path):
    cfg = load_experiment(SMOKE, ["server.clients_per_round=100"])
    warned = check_population(cfg, 20)
    assert warned.warnings == ("server.clients_per_round = 100 is more than the 20 training "
                               "clients: every round trains all 20",)
    # The default cohort (10) is capped without a word: the user asked for nothing.
    assert check_population(load_experiment(write(tmp_path, "[experiment]\nname = 'x'\n")), 3).warnings == ()
    with pytest.raises(ConfigError, match="server.min_clients = 30"):
        check_population(load_experiment(SMOKE, ["server.clients_per_round=40",
                                                 "server.min_clients=30"]), 20)
