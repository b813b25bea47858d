"""fl_sim.app.cluster.stop_pids: SIGTERM, then SIGKILL for what is still there after the timeout."""

import signal
import subprocess
import sys

from fl_sim.app.cluster import stop_pids


def test_terminates_then_kills_what_ignores_sigterm():
    polite = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    stubborn = subprocess.Popen([sys.executable, "-c",
                                 "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                 "print('ready', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    assert stubborn.stdout.readline().strip() == "ready"  # its handler is installed
    try:
        stop_pids([polite.pid, stubborn.pid], timeout=1.0)
        assert polite.wait(timeout=10) == -signal.SIGTERM
        assert stubborn.wait(timeout=10) == -signal.SIGKILL
    finally:
        for p in (polite, stubborn):
            if p.poll() is None:
                p.kill()


def test_gone_pids_are_ignored():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait(timeout=30)
    stop_pids([p.pid], timeout=0.1)  # nothing to do, nothing raised
