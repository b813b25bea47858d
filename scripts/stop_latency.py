"""Seconds from SIGINT / SIGTERM to the exit of `fl-sim run`, signalled mid-round.

    .venv/bin/python scripts/stop_latency.py [--trials 3]

Each trial starts experiments/smoke.toml with slow rounds (200 local epochs, about 2 s a
round), waits for round 1's line, sends the signal (SIGINT to the process group, as a
terminal's Ctrl-C does; SIGTERM to the process alone, as `kill` does) and times the exit.
Prints one line per trial and the exit codes (130 / 143 expected).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUN = [sys.executable, "-m", "fl_sim.app.cli", "run", "experiments/smoke.toml", "--rounds", "50",
       "--set", "client.max_steps=0", "--set", "client.local_epochs=200"]


def trial(sig: signal.Signals, group: bool, out: str) -> tuple[int, float]:
    proc = subprocess.Popen([*RUN, "--out", out], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in proc.stdout:
        if "round   1/" in line:
            break
    t0 = time.monotonic()
    (os.killpg if group else os.kill)(proc.pid, sig)
    try:
        proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait(), time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as out:
        for sig, group in ((signal.SIGINT, True), (signal.SIGTERM, False)):
            for i in range(args.trials):
                rc, dt = trial(sig, group, out)
                print(f"{sig.name:7s} {'group' if group else 'process':7s} trial {i + 1}: "
                      f"exit {rc} after {dt:.1f} s", flush=True)


if __name__ == "__main__":
    main()
