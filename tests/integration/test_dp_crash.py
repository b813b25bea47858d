"""A DP run killed at the worst moments resumes to exactly the uninterrupted run (issue 15.5, 15.7).

Killed (SIGKILL, fl_sim.app.server_app.crash_point) either
- after round 2 was checkpointed and charged but before it was released: the resume
  releases round 2 from the checkpoint as computed and never trains it again (training it
  again would release a second model with the same noise and possibly other clients), or
- in the middle of round 3, after aggregation but before its checkpoint: nothing of round 3
  was released or charged, so the resume trains it again;
and in both cases trains on to round 4. Every released row (evaluation of each round's
model, noise std, epsilon), every diagnostics row but timings, and the final weights must
equal the uninterrupted run's: per-round evaluation of identical models means identical
noise, since the clients' updates are seeded.
"""

import json
import os
import signal
import subprocess

import numpy as np
import pytest

from tests.integration.conftest import FL_SIM, REPO, run_cli, run_dirs

SMOKE = "experiments/smoke.toml"
ARGS = ["run", SMOKE, "--rounds", "4", "--set", "privacy.enabled=true",
        "--set", "privacy.noise_multiplier=1.0", "--set", "privacy.clip_norm=0.5"]
TIMES = {"round_time_s", "wall_time_s"}


def rows(path):
    return [{k: v for k, v in json.loads(x).items() if k not in TIMES}
            for x in path.read_text().splitlines()]


def run_killed(out, crash_at, log):
    """Run until the crash point kills the server; then end whatever it left (Ray)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1",
           "FL_SIM_CRASH_AT": crash_at}
    with open(log, "w") as fh:
        proc = subprocess.Popen([*FL_SIM, *ARGS, "--out", str(out)], cwd=REPO, stdout=fh,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            rc = proc.wait(timeout=600)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert rc == -signal.SIGKILL, log.read_text()[-3000:]
    (run_dir,) = run_dirs(out, "smoke")
    return run_dir


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    proc = run_cli(*ARGS, "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_dir,) = run_dirs(out, "smoke")
    return run_dir


def assert_same_run(run_dir, ref):
    assert rows(run_dir / "metrics.jsonl") == rows(ref / "metrics.jsonl")
    assert rows(run_dir / "diagnostics.jsonl") == rows(ref / "diagnostics.jsonl")
    with np.load(run_dir / "final_weights.npz") as a, np.load(ref / "final_weights.npz") as b:
        for k in b.files:
            np.testing.assert_array_equal(a[k], b[k])


def test_killed_between_checkpoint_and_release(uninterrupted, tmp_path):
    run_dir = run_killed(tmp_path, "checkpointed:2", tmp_path / "log.txt")
    # Round 2 is charged and checkpointed, not released
    latest = json.loads((run_dir / "checkpoints" / "latest.json").read_text())
    assert latest["round"] == 2
    assert [r["round"] for r in rows(run_dir / "metrics.jsonl")] == [1]
    again = run_cli("run", "--resume", run_dir)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "round 2 was checkpointed but not yet released" in again.stdout
    assert "round   2/4" not in again.stdout  # released from the checkpoint, not retrained
    assert_same_run(run_dir, uninterrupted)


def test_killed_mid_round_resumes_to_the_same_weights_noise_and_epsilon(uninterrupted, tmp_path):
    run_dir = run_killed(tmp_path, "aggregated:3", tmp_path / "log.txt")
    assert [r["round"] for r in rows(run_dir / "metrics.jsonl")] == [1, 2]
    again = run_cli("run", "--resume", run_dir)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resuming after round 2" in again.stdout and "round   3/4" in again.stdout
    assert_same_run(run_dir, uninterrupted)
    final = rows(run_dir / "metrics.jsonl")[-1]
    assert final["epsilon_rdp"] == rows(uninterrupted / "metrics.jsonl")[-1]["epsilon_rdp"] > 0
