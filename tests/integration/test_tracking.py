"""MLflow tracking against a local SQLite store (no server, no network): what a run logs
reads back as exactly what its metrics.jsonl holds."""

import json
import math

import tomllib

# Imported, not importorskip'ed: requirements.lock installs mlflow-skinny, so a missing
# MLflow fails this test instead of quietly skipping it.
from mlflow.tracking import MlflowClient

from fl_sim.config import from_dict
from fl_sim.tracking import flat_params
from tests.integration.conftest import run_cli, run_dirs


def test_mlflow_run_matches_metrics_jsonl(tmp_path):
    # Prepare
    db = tmp_path / "store" / "mlflow.db"
    uri = f"sqlite:///{db}"
    # Execute: a 3-round run, then a second one that adds a run to the same store
    for _ in range(2):
        res = run_cli("run", "experiments/smoke.toml", "--rounds", "3", "--out", tmp_path / "out",
                      "--set", 'tracking.backend="mlflow"', "--set", f'tracking.uri="{uri}"')
        assert res.returncode == 0, res.stderr
    # Assert
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("smoke")
    runs = client.search_runs([exp.experiment_id])
    dirs = run_dirs(tmp_path / "out", "smoke")
    assert len(runs) == len(dirs) == 2
    by_dir = {r.data.tags["fl_sim.run_dir"]: r for r in runs}
    for run_dir in dirs:
        run = by_dir[str(run_dir.resolve())]
        assert run.info.status == "FINISHED"
        assert json.loads((run_dir / "tracking.json").read_text())["run_id"] == run.info.run_id
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        rounds = [r for r in rows if r["type"] == "round"]
        final = next(r for r in rows if r["type"] == "final")
        assert [r["round"] for r in rounds] == [1, 2, 3]
        expected: dict[str, list] = {}
        for r in rounds:
            for k, v in r.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("round", "type"):
                    expected.setdefault(k, []).append((r["round"], float(v)))
        logged = {k for k in run.data.metrics if not k.startswith("final/")}
        assert logged == set(expected)
        for key, history in expected.items():
            # metrics.jsonl holds Python floats via JSON (exact round trip) and the SQLite
            # store holds doubles: the values must be equal, not close.
            got = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
            assert got == history, key
        for k, v in final.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("round", "type"):
                assert run.data.metrics[f"final/{k}"] == float(v) or (math.isnan(v) and math.isnan(
                    run.data.metrics[f"final/{k}"]))
        # The resolved config, as params and as the file, and the run's files as artifacts.
        cfg = from_dict(tomllib.loads((run_dir / "config.resolved.toml").read_text()))
        assert run.data.params == flat_params(cfg)
        names = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.resolved.toml", "metrics.jsonl", "manifest.json", "final_weights.npz",
                "plots"} <= names
        assert (db.parent / "mlartifacts" / "smoke").is_dir()  # artifacts next to the store


def test_tracking_is_off_by_default(tmp_path):
    res = run_cli("run", "experiments/smoke.toml", "--rounds", "1", "--out", tmp_path)
    assert res.returncode == 0, res.stderr
    (run_dir,) = run_dirs(tmp_path, "smoke")
    assert not (run_dir / "tracking.json").exists()
    assert not list(tmp_path.rglob("mlflow.db"))


def test_under_dp_mlflow_gets_only_what_metrics_jsonl_releases(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    res = run_cli("run", "experiments/smoke.toml", "--rounds", "2", "--out", tmp_path / "out",
                  "--set", "privacy.enabled=true", "--set", "privacy.noise_multiplier=0.5",
                  "--set", 'tracking.backend="mlflow"', "--set", f'tracking.uri="{uri}"')
    assert res.returncode == 0, res.stderr
    (run_dir,) = run_dirs(tmp_path / "out", "smoke")
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("smoke").experiment_id])
    released = set()
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["type"] == "round":
            released |= {k for k, v in row.items() if isinstance(v, (int, float))
                         and not isinstance(v, bool) and k not in ("round", "type")}
    diagnostics = {k for line in (run_dir / "diagnostics.jsonl").read_text().splitlines()
                   for k in json.loads(line)} - {"type", "round", "model", "non_private"}
    logged = {k for k in run.data.metrics if not k.startswith("final/")}
    assert logged == released and "train_loss" in diagnostics and not logged & diagnostics
    assert "epsilon_rdp" in logged
    assert "diagnostics.jsonl" not in {a.path for a in client.list_artifacts(run.info.run_id)}
    statement = (run_dir / "privacy_statement.md").read_text()
    assert "`tracking.json`: covered" in statement
