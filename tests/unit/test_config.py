"""Config validation: every error names the file, key, value and what was expected."""

from pathlib import Path

import pytest

from fl_sim.config import ConfigError, dumps_toml, load_experiment

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path, text):
    p = tmp_path / "exp.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "experiments").glob("*.toml")))
def test_shipped_experiments_are_valid(name):
    cfg = load_experiment(REPO / "experiments" / name)
    assert cfg.experiment.rounds >= 1


def test_unknown_key_names_file_and_key(tmp_path):
    p = write(tmp_path, "[client]\nlearning_rate = 0.1\n")
    with pytest.raises(ConfigError) as e:
        load_experiment(p)
    msg = str(e.value)
    assert str(p) in msg and "client.learning_rate" in msg and "lr" in msg


def test_unknown_section(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown section \[optim\]"):
        load_experiment(write(tmp_path, "[optim]\nlr = 1\n"))


@pytest.mark.parametrize("text,needle", [
    ('[client]\nlr = "fast"\n', "client.lr = 'fast': expected a number"),
    ("[client]\nlr = 0\n", "client.lr = 0.0: expected number > 0.0"),
    ("[server]\nclients_per_round = 2.5\n", "server.clients_per_round = 2.5: expected an integer"),
    ('[model]\nkind = "gru"\n', "model.kind = 'gru': expected one of 'cifg', 'si_cifg'"),
    ("[data]\neval_clients = 0\n", "data.eval_clients = 0: expected"),
    ("[data]\ntest_fraction = 0.2\n", "unknown key data.test_fraction"),
    ("[server]\nweighted = 1\n", "server.weighted = 1: expected true or false"),
    ('[experiment]\ncompare = ["cifg", "lstm"]\n', "experiment.compare"),
    ('[data]\nsource = "jsonl"\n', "data.path = '': expected a path"),
    ("[server]\nclients_per_round = 2\nmin_clients = 3\n", "server.min_clients = 3"),
])
def test_bad_values(tmp_path, text, needle):
    with pytest.raises(ConfigError) as e:
        load_experiment(write(tmp_path, text))
    assert needle in str(e.value)


def test_not_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_experiment(write(tmp_path, "[client\n"))
    with pytest.raises(ConfigError, match="no such experiment file"):
        load_experiment(tmp_path / "nope.toml")


def test_overrides_are_validated_like_the_file(tmp_path):
    p = write(tmp_path, "[client]\nlr = 0.1\n")
    cfg = load_experiment(p, ["client.lr=0.3", "data.source=synthetic", 'model.kind="cifg"'])
    assert cfg.client.lr == 0.3 and cfg.data.source == "synthetic" and cfg.model.kind == "cifg"
    with pytest.raises(ConfigError, match="client.lr = -1"):
        load_experiment(p, ["client.lr=-1"])
    with pytest.raises(ConfigError, match="expected section.key=value"):
        load_experiment(p, ["lr=3"])
    with pytest.raises(ConfigError, match="unknown key client.lrr"):
        load_experiment(p, ["client.lrr=3"])


def test_resolved_config_round_trips(tmp_path):
    cfg = load_experiment(REPO / "experiments" / "demo.toml")
    again = load_experiment(write(tmp_path, dumps_toml(cfg)))
    assert again == cfg


def test_audit_section_is_off_by_default_and_needs_privacy(tmp_path):
    from fl_sim.config import from_dict

    assert from_dict({}).audit.canaries == 0
    assert from_dict({"privacy": {"enabled": True}, "audit": {"canaries": 50}}).audit.canaries == 50
    with pytest.raises(ConfigError, match="audit.canaries = 50: expected privacy.enabled = true"):
        from_dict({"audit": {"canaries": 50}})
    with pytest.raises(ConfigError, match="audit.canaries"):
        from_dict({"privacy": {"enabled": True}, "audit": {"canaries": -1}})
