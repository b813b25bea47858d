"""Who a warm trainer is, and who a process is (clients/trainer_link.py, clients/trainer_process.py).

A trainer's key names what it would compute with: the experiment TOML, the app's code
directory (a FAB's install directory names its hash) and the Python executable. A process
is its PID together with its start time, so a reused PID is never taken for it.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

APP_ROOT = Path(__file__).resolve().parent.parent


def trainer_key(experiment_toml: str) -> str:
    h = hashlib.sha256()
    for part in (experiment_toml, str(APP_ROOT), sys.executable):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot; None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])
