"""Who a process is: its PID together with its start time, so a reused PID is never taken
for it (the local cluster's SuperLink/SuperNodes and the warm per-node trainers)."""

from __future__ import annotations

from pathlib import Path


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
