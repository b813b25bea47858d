"""Who a warm trainer is (clients/trainer_link.py, clients/trainer_process.py).

A trainer's key names what it would compute with: the experiment TOML, the app's code
directory (a FAB's install directory names its hash) and the Python executable. Who a
process is (PID and start time) is fl_sim/processes.py's.
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
