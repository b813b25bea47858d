"""`flwr run .` through Flower's own CLI (slow: Flower builds a runtime env for the app)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _processes_started_for(marker: str) -> list[int]:
    """PIDs whose command line names ``marker`` (this test's tmp dir), and their children."""
    found, parents = [], {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        parents[int(entry.name)] = ppid
        if marker in cmd:
            found.append(int(entry.name))
    children = [pid for pid, ppid in parents.items() if ppid in found and pid not in found]
    return found + children


@pytest.mark.slow
def test_flwr_run_dot_runs_the_app(tmp_path):
    flwr = Path(sys.executable).parent / "flwr"
    env = {**os.environ, "PATH": f"{flwr.parent}:{os.environ['PATH']}", "FLWR_HOME": str(tmp_path / "flwr-home")}
    out = tmp_path / "results"
    try:
        proc = subprocess.run(
            [str(flwr), "run", ".", "--stream", "--run-config",
             f'experiment="experiments/smoke.toml" output-dir="{out}"'],
            cwd=REPO, capture_output=True, text=True, timeout=900, env=env)
    finally:
        # `flwr run` with the local-simulation connection starts a background SuperLink
        # (logging into our FLWR_HOME) that outlives the command: stop what it started.
        pids = _processes_started_for(str(tmp_path))
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
            time.sleep(0.2)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = list((out / "smoke").iterdir())
    assert len(runs) == 1 and (runs[0] / "summary.json").exists()
    assert "round   2/2" in proc.stdout
