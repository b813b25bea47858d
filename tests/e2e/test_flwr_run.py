"""`flwr run .` through Flower's own CLI (slow: Flower builds a runtime env for the app)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_flwr_run_dot_runs_the_app(tmp_path):
    flwr = Path(sys.executable).parent / "flwr"
    env = {**os.environ, "PATH": f"{flwr.parent}:{os.environ['PATH']}", "FLWR_HOME": str(tmp_path / "flwr-home")}
    out = tmp_path / "results"
    proc = subprocess.run(
        [str(flwr), "run", ".", "--stream", "--run-config",
         f'experiment="experiments/smoke.toml" output-dir="{out}"'],
        cwd=REPO, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = list((out / "smoke").iterdir())
    assert len(runs) == 1 and (runs[0] / "summary.json").exists()
    assert "round   2/2" in proc.stdout
