"""SIGINT / SIGTERM stop a run within seconds: exit 130 / 143, no traceback, resumable.

Rounds are made slow on purpose (many local epochs on the smoke data, about 2 s each on a
2-core machine) so that the signal lands while clients train. The timeouts are hang
detectors (a run that ignores the signal waits for server.round_timeout, 600 s), not speed
checks.
"""

import json
import os
import signal
import subprocess

from tests.integration.conftest import kill_group, run_cli, run_dirs, start_cli

SLOW_ROUNDS = ["experiments/smoke.toml", "--rounds", 5,
               "--set", "client.max_steps=0", "--set", "client.local_epochs=200"]
HANG_S = 90


def wait_for_line(proc, text: str) -> str:
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if text in line:
            return "".join(seen)
    raise AssertionError(f"the run ended before printing {text!r}:\n" + "".join(seen))


def stop(proc, sig, *, group: bool) -> tuple[int, str]:
    """Send ``sig`` as a terminal (the whole group) or a supervisor (the process) would."""
    (os.killpg if group else os.kill)(proc.pid, sig)
    try:
        rest, _ = proc.communicate(timeout=HANG_S)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        raise AssertionError(f"the run did not stop within {HANG_S} s of {sig.name}") from None
    return proc.returncode, rest


def test_sigint_and_sigterm_mid_round_stop_cleanly_and_resume(tmp_path):
    proc = start_cli("run", *SLOW_ROUNDS, "--out", tmp_path)
    try:
        head = wait_for_line(proc, "round   1/5")
        rc, rest = stop(proc, signal.SIGINT, group=True)  # Ctrl-C in a terminal
    finally:
        kill_group(proc)
    (run_dir,) = run_dirs(tmp_path, "smoke")
    assert rc == 130, head + rest
    assert "Traceback" not in head + rest and "ERROR" not in rest, rest
    assert f"continue with: fl-sim run --resume {run_dir}" in rest

    # The resumed run is stopped again, by SIGTERM to the process alone (kill, systemd).
    proc = start_cli("run", "--resume", run_dir)
    try:
        head = wait_for_line(proc, "resuming after round")
        wait_for_line(proc, "/5  clients")
        rc, rest = stop(proc, signal.SIGTERM, group=False)
    finally:
        kill_group(proc)
    assert rc == 143, head + rest
    assert "Traceback" not in head + rest and "ERROR" not in rest, rest
    assert f"continue with: fl-sim run --resume {run_dir}" in rest

    done = run_cli("run", "--resume", run_dir, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rounds = [r for r in rows if r["type"] == "round"]
    # Each round exactly once, and none recorded from an interrupted round's failed replies.
    assert [r["round"] for r in rounds] == [1, 2, 3, 4, 5]
    assert all(r["clients_completed"] == 4 and r["clients_failed"] == 0 for r in rounds), rounds
    assert rows[-1]["type"] == "final" and rows[-1]["rounds_completed"] == 5


def test_signal_before_the_run_starts_leaves_nothing(tmp_path):
    proc = start_cli("run", *SLOW_ROUNDS, "--out", tmp_path)
    try:
        head = wait_for_line(proc, "fl-sim: starting")
        rc, rest = stop(proc, signal.SIGTERM, group=False)
    finally:
        kill_group(proc)
    assert rc == 143 and "Traceback" not in rest, head + rest
    assert "continue with" in rest or "nothing to resume" in rest
    if "nothing to resume" in rest:
        assert run_dirs(tmp_path, "smoke") == []
