"""A damaged run directory: named in the error, exit 2, or resumed from an intact checkpoint."""

import json
import shutil
import signal

from tests.integration.conftest import kill_group, run_cli, run_dirs, start_cli
from tests.integration.test_interrupts import stop, wait_for_line

# Slow rounds (see test_interrupts) so that the run is stopped after round 2 of 3.
SLOW_3 = ["experiments/smoke.toml", "--rounds", 3,
          "--set", "client.max_steps=0", "--set", "client.local_epochs=200"]


def halve(path):
    with open(path, "r+b") as fh:  # like `truncate -s`: a torn copy or a full disk
        fh.truncate(path.stat().st_size // 2)


def test_truncated_checkpoints(tmp_path):
    proc = start_cli("run", *SLOW_3, "--out", tmp_path / "out")
    try:
        wait_for_line(proc, "round   2/3")
        rc, rest = stop(proc, signal.SIGINT, group=True)
    finally:
        kill_group(proc)
    assert rc == 130, rest
    (run_dir,) = run_dirs(tmp_path / "out", "smoke")
    ckpts = run_dir / "checkpoints"
    assert json.loads((ckpts / "latest.json").read_text())["round"] == 2
    halve(ckpts / "round-00002.npz")

    exp = run_cli("export", run_dir, "--checkpoint", "round-00002.npz", "--out", tmp_path / "exp")
    assert exp.returncode == 2, exp.stdout + exp.stderr
    assert "round-00002.npz" in exp.stderr and "Traceback" not in exp.stderr

    # Both checkpoints torn: nothing intact to resume from.
    both = tmp_path / "both"
    shutil.copytree(run_dir, both)
    halve(both / "checkpoints" / "round-00001.npz")
    res = run_cli("run", "--resume", both, timeout=120)
    assert res.returncode == 2, res.stdout + res.stderr
    for name in ("round-00001.npz", "round-00002.npz", "no intact checkpoint", "fl-sim run "):
        assert name in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and "resuming" not in res.stdout

    # metrics.jsonl damaged mid-file: a resume could not be exact.
    torn = tmp_path / "torn_metrics"
    shutil.copytree(run_dir, torn)
    metrics = torn / "metrics.jsonl"
    metrics.write_text("{torn\n" + "".join(metrics.read_text().splitlines(True)[1:]))
    res = run_cli("run", "--resume", torn, timeout=120)
    assert res.returncode == 2, res.stdout + res.stderr
    assert f"{metrics}:1" in res.stderr and "Traceback" not in res.stderr

    # Only the newest torn, and latest.json (only an index) unreadable: resume from round 1,
    # say so, and train rounds 2 and 3 again.
    (ckpts / "latest.json").write_text("{")
    res = run_cli("run", "--resume", run_dir)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{ckpts / 'latest.json'}: unreadable" in res.stdout, res.stdout
    assert "resuming from round-00001.npz (round 1)" in res.stdout, res.stdout
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows if r["type"] == "round"] == [1, 2, 3]
    assert rows[-1]["type"] == "final"
