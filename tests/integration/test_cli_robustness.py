"""What new users try: odd names, NaN, contradicting settings. Exit 2, named, nothing written.

All but one of these fail before Flower starts (seconds each).
"""

import json
import os

import pytest

from tests.integration.conftest import run_cli, run_dirs

SMOKE = "experiments/smoke.toml"


def tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def usage_error(proc, *needles):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    for n in needles:
        assert n in proc.stderr, proc.stderr


# --------------------------------------------------------------------------- 3: names as paths


@pytest.mark.parametrize("name", ["../../../escaped", "..", "a/b", "nl\nx"])
def test_experiment_names_cannot_leave_the_output_root(tmp_path, name):
    out = tmp_path / "a" / "b" / "c" / "out"
    out.mkdir(parents=True)
    before = tree(tmp_path)
    proc = run_cli("run", SMOKE, "--out", out, "--set", "experiment.name=" + json.dumps(name))
    usage_error(proc, "experiment.name", "expected a plain name")
    assert tree(tmp_path) == before


def test_an_absolute_name_does_not_replace_the_output_root(tmp_path):
    target = tmp_path / "elsewhere"
    proc = run_cli("run", SMOKE, "--out", tmp_path / "out", "--set", f'experiment.name="{target}"')
    usage_error(proc, "experiment.name", "path separator")
    assert not target.exists() and not (tmp_path / "out").exists()


def test_names_in_files_and_sweeps(tmp_path):
    exp = tmp_path / "exp.toml"
    exp.write_text(open(SMOKE).read().replace('name = "smoke"', 'name = "../../up"'))
    usage_error(run_cli("run", exp, "--out", tmp_path / "out"), str(exp), "experiment.name")
    sweep = tmp_path / "sweep.toml"
    (tmp_path / "base.toml").write_text(open(SMOKE).read())
    sweep.write_text('[sweep]\nname = "../../up"\nexperiment = "base.toml"\nnoise_multipliers = [1.0]\n')
    usage_error(run_cli("sweep", sweep, "--out", tmp_path / "out"), str(sweep), "sweep.name")
    assert sorted(os.listdir(tmp_path)) == ["base.toml", "exp.toml", "sweep.toml"]
    assert not (tmp_path.parent / "up").exists()


# --------------------------------------------------------------------------- 4: NaN, contradictions


@pytest.mark.parametrize("setting", ["client.lr=nan", "server.lr=inf", "privacy.clip_norm=nan"])
def test_non_finite_numbers_exit_2(tmp_path, setting):
    proc = run_cli("run", SMOKE, "--out", tmp_path, "--set", "privacy.enabled=true", "--set", setting)
    usage_error(proc, f"--set {setting}", "expected a finite number")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("sets, needle", [
    (["privacy.enabled=true", "privacy.noise_multiplier=0.3", "privacy.target_epsilon=8"],
     "privacy.noise_multiplier = 0.3 and privacy.target_epsilon = 8.0: expected one of them"),
    (["privacy.max_epsilon=8"], "privacy.max_epsilon = 8.0 is set but privacy.enabled is false"),
    (["privacy.noise_multiplier=0.5"], "privacy.noise_multiplier = 0.5 is set but privacy.enabled"),
    (["server.clients_per_round=40", "server.min_clients=30"], "server.min_clients = 30"),
])
def test_contradictions_exit_2(tmp_path, sets, needle):
    args = [x for s in sets for x in ("--set", s)]
    usage_error(run_cli("run", SMOKE, "--out", tmp_path, *args), needle)
    assert not any(tmp_path.iterdir())


def test_directory_as_experiment_and_no_false_override_blame(tmp_path):
    usage_error(run_cli("run", tmp_path), f"{tmp_path}: a directory; expected an experiment TOML file")
    exp = tmp_path / "exp.toml"
    exp.write_text("[client]\nlr = -1\n")
    proc = run_cli("run", exp)
    usage_error(proc, f"{exp}: client.lr = -1.0")
    assert "--set" not in proc.stderr


def test_a_capped_cohort_warns_and_the_manifest_keeps_it(tmp_path):
    # smoke.toml: 24 synthetic clients, 4 held out, so 20 train.
    proc = run_cli("run", SMOKE, "--rounds", 1, "--out", tmp_path, "--set", "server.clients_per_round=100")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    note = "server.clients_per_round = 100 is more than the 20 training clients: every round trains all 20"
    assert f"fl-sim: warning: {note}" in proc.stderr
    (run_dir,) = run_dirs(tmp_path, "smoke")
    assert json.loads((run_dir / "manifest.json").read_text())["warnings"] == [note]
    first = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
    assert first["clients_sampled"] == 20
