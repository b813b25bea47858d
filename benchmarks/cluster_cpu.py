"""CPU seconds of a local cluster's processes per round, by role (for bench_deploy).

On a shared machine wall time measures what other jobs leave over; CPU time measures the
work. The processes of ``fl-sim cluster`` are not descendants of the benchmark (each runs
in its own session), so this reads them from /proc: the SuperLink and SuperNodes recorded in
``cluster.json`` and their descendants, plus the warm trainers of that cluster's nodes
(their own session too). A per-message ``flwr-clientapp`` process lives a few seconds; its
CPU is taken whole from its SuperExec's ``cutime + cstime`` (the CPU of children it has
waited for), so none of it is lost between two samples. Each time the run's metrics.jsonl
gains a row, the totals are recorded: the differences are CPU seconds per round.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from benchmarks.common import Poller, children_by_parent, proc_stat

TICK = os.sysconf("SC_CLK_TCK")


def _role(pid: int, cluster: str) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "gone"
    for needle, role in (("flower-superlink", "superlink"), ("flwr-serverapp", "serverapp"),
                         ("flower-supernode", "supernode"), ("flower-superexec", "superexec"),
                         ("flwr-clientapp", "clientapp-live"), ("clients.trainer_process", "trainer")):
        if needle in cmd:
            return role if role != "trainer" or cluster in cmd else "other"
    return "other"


class ClusterCPU(Poller):
    def __init__(self, cluster: Path, out: Path, interval: float = 0.25):
        super().__init__(interval)
        self.cluster, self.out = Path(cluster), Path(out)
        state = json.loads((self.cluster / "cluster.json").read_text())
        self.roots = [e["pid"] for e in [state["superlink"], *state["supernodes"]] if e.get("pid")]
        self.known: dict[tuple[int, str], str] = {}  # (pid, start) -> role
        self.last: dict[tuple[int, str], dict[str, float]] = {}  # (pid, start) -> CPU s by role
        self.rows: list[dict[str, float]] = []
        self._lines = 0

    def _pids(self) -> list[int]:
        kids = children_by_parent()
        trainers = kids.get(1, [])  # a trainer outlives the clientapp that started it: init adopts it
        out, todo = [], list(self.roots)
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo.extend(kids.get(pid, []))
        mine = set(out)
        return out + [p for p in trainers if p not in mine]

    def _poll(self) -> None:
        for pid in self._pids():
            st = proc_stat(pid)
            if st is None:
                continue
            key = (pid, st[19])
            if key not in self.known:
                self.known[key] = _role(pid, str(self.cluster))
            role = self.known[key]
            if role in ("other", "gone", "clientapp-live"):
                continue  # a clientapp's CPU arrives whole in its SuperExec's cutime
            own = (int(st[11]) + int(st[12])) / TICK
            cpu = {role: own}
            if role == "superexec":
                cpu["clientapp"] = (int(st[13]) + int(st[14])) / TICK
            self.last[key] = cpu

    def totals(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for cpu in self.last.values():
            for k, v in cpu.items():
                out[k] = out.get(k, 0.0) + v
        return out

    def tick(self) -> None:
        self._poll()
        metrics = next(self.out.glob("*/*/metrics.jsonl"), None)
        if metrics is None:
            return
        try:
            n = sum(1 for line in metrics.read_text().splitlines() if line.strip())
        except OSError:
            return
        if n > self._lines:
            self._lines = n
            self.rows.append({"t": time.monotonic(), **self.totals()})

    def per_round(self, rounds: int) -> list[dict[str, float]]:
        """CPU seconds by role of rounds 2..rounds (between consecutive metrics rows)."""
        out = []
        for a, b in zip(self.rows, self.rows[1:]):
            out.append({k: round(b.get(k, 0.0) - a.get(k, 0.0), 3) for k in b if k != "t"})
        return out[:rounds - 1]
