"""Ctrl-C on `fl-sim cluster run` stops the run on the cluster too, and it resumes.

The ServerApp runs in the SuperLink's processes, so stopping the local `flwr run` alone
would leave it training. Slow: a real SuperLink and two SuperNodes (about 3 min).
"""

import json
import signal
import time

import pytest

from tests.integration.conftest import kill_group, run_cli, run_dirs, start_cli
from tests.integration.test_interrupts import stop, wait_for_line

pytestmark = pytest.mark.slow


def test_sigint_stops_a_cluster_run_and_it_resumes(tmp_path):
    d = tmp_path / "cluster"
    up = run_cli("cluster", "up", "--dir", d, "--supernodes", 2, "--timeout", 120, timeout=300)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        proc = start_cli("cluster", "run", "--dir", d, "experiments/smoke.toml", "--rounds", 3,
                         "--out", tmp_path / "out", "--set", "client.max_steps=0",
                         "--set", "client.local_epochs=100")
        try:
            head = wait_for_line(proc, "round   1/3")
            rc, rest = stop(proc, signal.SIGINT, group=True)
        finally:
            kill_group(proc)
        (run_dir,) = run_dirs(tmp_path / "out", "smoke")
        assert rc == 130, head + rest
        assert "Traceback" not in rest
        assert f"continue with: fl-sim cluster run --resume {run_dir}" in rest
        # The ServerApp on the cluster stopped as well: no more rounds are written.
        metrics = run_dir / "metrics.jsonl"
        written = metrics.read_text()
        time.sleep(20)
        assert metrics.read_text() == written

        res = run_cli("cluster", "run", "--dir", d, "--resume", run_dir, "--timeout", 500, timeout=600)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        rows = [json.loads(x) for x in metrics.read_text().splitlines()]
        assert [r["round"] for r in rows if r["type"] == "round"] == [1, 2, 3]
        assert rows[-1]["type"] == "final"
    finally:
        run_cli("cluster", "down", "--dir", d, timeout=120)
