"""W&B tracking, offline only (no server, no network): what a run logs, read back from the
offline run's own .wandb file, is exactly what its metrics.jsonl and run directory hold."""

import base64
import hashlib
import json
import math

import tomllib

# Imported, not importorskip'ed: requirements.lock installs wandb, so a missing W&B fails
# this test instead of quietly skipping it. An offline run keeps everything in its .wandb
# file (no config.yaml or wandb-summary.json is written offline: measured with 0.22.3,
# 0.28.2, 0.29.0 and 0.30.0), and W&B has no public reader for it; this is the reader W&B's
# own legacy `wandb sync` uses, in the pinned release (0.30 removed it; requirements.lock).
from wandb.proto import wandb_internal_pb2
from wandb.sdk.internal.datastore import DataStore

from fl_sim.config import from_dict, to_dict
from fl_sim.tracking import ARTIFACTS, numeric
from tests.integration.conftest import run_cli, run_dirs


def offline_env(tmp_path) -> dict:
    """Offline, and every directory W&B writes (its settings, cache, artifact staging) in tmp."""
    w = tmp_path / "wandb-home"
    return {"WANDB_MODE": "offline", "WANDB_DIR": str(w / "dir"), "WANDB_CONFIG_DIR": str(w / "config"),
            "WANDB_CACHE_DIR": str(w / "cache"), "WANDB_DATA_DIR": str(w / "data"),
            "WANDB_ARTIFACT_DIR": str(w / "artifacts"), "HOME": str(w / "home")}


def read_offline_run(path) -> dict:
    """The records of one offline run directory's .wandb file, by kind."""
    (log,) = path.glob("run-*.wandb")
    store = DataStore()
    store.open_for_scan(str(log))
    out = {"run": None, "config": {}, "history": {}, "summary": {}, "artifacts": []}
    while (data := store.scan_data()) is not None:
        rec = wandb_internal_pb2.Record()
        rec.ParseFromString(data)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out["run"] = rec.run
            out["config"].update({i.key: json.loads(i.value_json) for i in rec.run.config.update})
        elif kind == "config":
            out["config"].update({i.key: json.loads(i.value_json) for i in rec.config.update})
        elif kind == "history":
            items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item}
            out["history"][rec.history.step.num] = items
        elif kind == "summary":
            out["summary"].update({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                                   for i in rec.summary.update})
        elif kind == "artifact":
            out["artifacts"].append(rec.artifact)
    return out


def same(a, b) -> bool:
    # W&B writes a double as its shortest repr and metrics.jsonl holds Python floats via
    # JSON: both round-trip exactly, so equal, not close (NaN, e.g. an empty eval, is NaN).
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def test_wandb_offline_run_matches_metrics_jsonl(tmp_path):
    # Prepare
    out = tmp_path / "out"
    # Execute: two 3-round runs into the same output directory
    for _ in range(2):
        res = run_cli("run", "experiments/smoke.toml", "--rounds", "3", "--out", out,
                      "--set", 'tracking.backend="wandb"', env_extra=offline_env(tmp_path))
        assert res.returncode == 0, res.stderr
    # Assert
    dirs = run_dirs(out, "smoke")
    assert len(dirs) == 2
    for run_dir in dirs:
        (path,) = (run_dir / "wandb").glob("offline-run-*")  # W&B's files stay in the run directory
        rec = read_offline_run(path)
        state = json.loads((run_dir / "tracking.json").read_text())
        assert state == {"backend": "wandb", "uri": "", "run_id": rec["run"].run_id,
                         "run_dir": str(path.resolve())}
        assert rec["run"].project == "smoke" and rec["run"].display_name == run_dir.name
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        rounds = [r for r in rows if r["type"] == "round"]
        final = next(r for r in rows if r["type"] == "final")
        assert [r["round"] for r in rounds] == [1, 2, 3]
        # Per-round metrics: one history row per round, step = round, only the row's numbers.
        assert sorted(rec["history"]) == [1, 2, 3]
        for r in rounds:
            logged = {k: v for k, v in rec["history"][r["round"]].items() if not k.startswith("_")}
            expected = numeric(r)
            assert set(logged) == set(expected), r["round"]
            assert all(same(logged[k], expected[k]) for k in expected), r["round"]
        for k, v in numeric(final).items():
            assert same(rec["summary"][f"final/{k}"], v), k
        # The resolved config, nested by section as config.resolved.toml has it.
        cfg = from_dict(tomllib.loads((run_dir / "config.resolved.toml").read_text()))
        config = {k: v for k, v in rec["config"].items() if k != "_wandb"}
        assert config == json.loads(json.dumps(to_dict(cfg)))
        # The run's files as one artifact, each with the digest (base64 MD5) of its file.
        (artifact,) = rec["artifacts"]
        assert artifact.type == "fl-sim-run"
        digests = {m.path: m.digest for m in artifact.manifest.contents}
        for name in ("config.resolved.toml", "metrics.jsonl", "manifest.json", "final_weights.npz"):
            md5 = base64.b64encode(hashlib.md5((run_dir / name).read_bytes()).digest()).decode()
            assert digests[name] == md5, name
        assert any(p.startswith("plots/") for p in digests)
        assert {p.split("/")[0] for p in digests} <= set(ARTIFACTS)
    assert not list((tmp_path / "wandb-home").glob("**/*.wandb"))  # dir= wins over WANDB_DIR


def test_under_dp_wandb_gets_only_what_metrics_jsonl_releases(tmp_path):
    out = tmp_path / "out"
    res = run_cli("run", "experiments/smoke.toml", "--rounds", "2", "--out", out,
                  "--set", "privacy.enabled=true", "--set", "privacy.noise_multiplier=0.5",
                  "--set", 'tracking.backend="wandb"', env_extra=offline_env(tmp_path))
    assert res.returncode == 0, res.stderr
    (run_dir,) = run_dirs(out, "smoke")
    (path,) = (run_dir / "wandb").glob("offline-run-*")
    rec = read_offline_run(path)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for r in (r for r in rows if r["type"] == "round"):
        logged = {k for k in rec["history"][r["round"]] if not k.startswith("_")}
        assert logged == set(numeric(r)) and "epsilon_rdp" in logged
    diagnostics = {k for line in (run_dir / "diagnostics.jsonl").read_text().splitlines()
                   for k in json.loads(line)} - {"type", "round", "model", "non_private"}
    assert "train_loss" in diagnostics and not diagnostics & {k for h in rec["history"].values() for k in h}
    (artifact,) = rec["artifacts"]
    assert "diagnostics.jsonl" not in {m.path for m in artifact.manifest.contents}
    # Every W&B file in the run directory is listed in the privacy statement, and classified
    # as config.resolved.toml is: it holds the config, the seed with it (smoke.toml draws
    # reproducible noise, so neither is covered).
    statement = (run_dir / "privacy_statement.md").read_text()
    (config_line,) = [line for line in statement.splitlines() if line.startswith("- `config.resolved.toml`: ")]
    status = config_line.split(": ")[1]
    assert status == "**not covered**"
    wandb_files = [p.relative_to(run_dir).as_posix() for p in (run_dir / "wandb").rglob("*") if p.is_file()]
    assert wandb_files and all(f"- `{rel}`: {status}: W&B's offline run" in statement
                               for rel in wandb_files), wandb_files
