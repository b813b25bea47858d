"""End to end through the real CLI and Flower's simulation runtime (Ray), on small data."""

import json

import pytest

from tests.integration.conftest import kill_group, run_cli, run_dirs, start_cli, wait_for

SMOKE = "experiments/smoke.toml"


def rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def without_times(rs):
    drop = {"round_time_s", "wall_time_s"}
    return [{k: v for k, v in r.items() if k not in drop} for r in rs]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted 3-round run, shared by the tests below."""
    out = tmp_path_factory.mktemp("ref")
    proc = run_cli("run", SMOKE, "--rounds", 3, "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_dir,) = run_dirs(out, "smoke")
    return run_dir, proc


def test_run_writes_the_results_layout(reference):
    run_dir, proc = reference
    rs = rows(run_dir)
    assert [r["round"] for r in rs if r["type"] == "round"] == [1, 2, 3]
    assert rs[-1]["type"] == "final"
    for r in rs[:-1]:
        assert r["clients_sampled"] == 4 and r["clients_completed"] == 4 and r["clients_failed"] == 0
        assert r["train_loss"] > 0 and 0 <= r["eval_accuracy"] <= 1 and r["eval_perplexity"] > 1
    for name in ("config.resolved.toml", "manifest.json", "summary.json", "summary.md",
                 "plots/learning_curves.png", "final_weights.npz"):
        assert (run_dir / name).exists(), name
    assert list((run_dir / "checkpoints").glob("round-*.npz"))
    assert list((run_dir / "tensorboard").iterdir())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["seed"] == 0 and manifest["packages"]["flwr"] == "1.42.0"
    assert "round   3/3" in proc.stdout and str(run_dir) in proc.stdout


def test_same_config_and_seed_give_identical_metrics(reference, tmp_path):
    run_dir, _ = reference
    proc = run_cli("run", SMOKE, "--rounds", 3, "--out", tmp_path, "--workers", 2)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (again,) = run_dirs(tmp_path, "smoke")
    # Two workers instead of one: the schedule differs, the numbers must not.
    assert without_times(rows(again)) == without_times(rows(run_dir))


def test_killed_run_resumes_to_the_same_metrics(reference, tmp_path):
    run_dir, _ = reference
    proc = start_cli("run", SMOKE, "--rounds", 3, "--out", tmp_path)
    try:
        wait_for(lambda: run_dirs(tmp_path, "smoke") and
                 (run_dirs(tmp_path, "smoke")[0] / "checkpoints" / "latest.json").exists(),
                 what="the first checkpoint")
    finally:
        kill_group(proc)
    (killed,) = run_dirs(tmp_path, "smoke")
    done = [r for r in rows(killed) if r["type"] == "round"]
    assert 1 <= len(done) < 3 or not (killed / "summary.json").exists()
    res = run_cli("run", "--resume", killed)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "resuming" in res.stdout
    assert without_times(rows(killed)) == without_times(rows(run_dir))


def test_jsonl_corpus(tmp_path):
    words = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran", "to", "park"]
    with open(tmp_path / "corpus.jsonl", "w") as fh:
        for c in range(16):
            for s in range(10):
                text = " ".join(words[(c + s + k) % len(words)] for k in range(6))
                fh.write(json.dumps({"client_id": f"user{c}", "text": text + "."}) + "\n")
    proc = run_cli("run", SMOKE, "--rounds", 1, "--out", tmp_path / "out",
                   "--set", "data.source=jsonl", "--set", f"data.path={tmp_path / 'corpus.jsonl'}",
                   "--set", f"data.cache_dir={tmp_path / 'cache'}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_dir,) = run_dirs(tmp_path / "out", "smoke")
    assert rows(run_dir)[-1]["type"] == "final"
    assert "jsonl" in (run_dir / "config.resolved.toml").read_text()
