"""What new users try: odd names, NaN, contradicting settings. Exit 2, named, nothing written.

All but one of these fail before Flower starts (seconds each).
"""

import json
import os
import shlex
import sqlite3
import subprocess

import pytest

from tests.integration.conftest import FL_SIM, REPO, run_cli, run_dirs

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


# --------------------------------------------------------------------------- 5: unwritable places


def test_out_that_is_a_file_exits_2(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    for out in (f, f / "below"):
        usage_error(run_cli("run", SMOKE, "--out", out), f"--out {out}: cannot write there",
                    f"{f} is not a directory")
    assert sorted(os.listdir(tmp_path)) == ["file"]


def test_read_only_out_and_cache_exit_2(tmp_path):
    # A read-only tmpfs in a private mount namespace: the only way to get EROFS as root (whom
    # permission bits do not stop) without touching the machine's mounts.
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True, text=True)
    assert probe.returncode == 0, ("this test needs unprivileged user and mount namespaces "
                                   f"(unshare -rm): {probe.stderr}")
    ro = tmp_path / "ro"
    ro.mkdir()
    fl_sim = " ".join(shlex.quote(str(a)) for a in FL_SIM)

    def run_ro(*args):
        script = (f"mount -t tmpfs -o ro none {shlex.quote(str(ro))} && exec {fl_sim} "
                  + " ".join(shlex.quote(str(a)) for a in args))
        return subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=REPO, capture_output=True,
                              text=True, timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    usage_error(run_ro("run", SMOKE, "--out", ro / "out"),
                f"--out {ro / 'out'}: cannot write there: {ro} is on a read-only file system")
    out = tmp_path / "out"
    proc = run_ro("run", SMOKE, "--out", out, "--set", f'data.cache_dir="{ro / "cache"}"')
    usage_error(proc, f"data.cache_dir = '{ro / 'cache'}': cannot write the tokenized corpus there",
                "Read-only file system")
    assert not out.exists()  # nothing half-way: no run directory for a run that cannot start


# --------------------------------------------------------------------------- 6: SQLite path


def _so_example(tokens: str) -> bytes:
    import tensorflow as tf

    feats = {"tokens": tf.train.Feature(bytes_list=tf.train.BytesList(value=[tokens.encode()]))}
    return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()


def test_sqlite_path_with_uri_characters(tmp_path):
    words = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran", "to", "park"]
    d = tmp_path / "so data"
    d.mkdir()
    db = d / "so#1?x=%41.sqlite"  # '#' and '?' end a URI's path; '%41' is 'A' once decoded
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE examples (split_name TEXT, client_id TEXT, serialized_example_proto BLOB)")
        con.execute("CREATE TABLE client_metadata (client_id TEXT, split_name TEXT, num_examples INTEGER)")
        for c in range(12):
            texts = [" ".join(words[(c + s + k) % 10] for k in range(6)) + " ." for s in range(6)]
            for t in texts:
                con.execute("INSERT INTO examples VALUES ('train', ?, ?)", (f"u{c}", _so_example(t)))
            con.execute("INSERT INTO client_metadata VALUES (?, 'train', ?)", (f"u{c}", len(texts)))
    con.close()
    before = sorted(os.listdir(d))
    proc = run_cli("run", SMOKE, "--rounds", 1, "--out", tmp_path / "out",
                   "--set", "data.source=stackoverflow_sqlite", "--set", f"data.path={json.dumps(str(db))}",
                   "--set", f"data.cache_dir={json.dumps(str(tmp_path / 'cache'))}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "8 training clients" in proc.stdout, proc.stdout  # 12 minus smoke's 4 held out
    assert sorted(os.listdir(d)) == before  # no stray "so" database created beside it
