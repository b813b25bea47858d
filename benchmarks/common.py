"""Shared pieces of the benchmarks: machine facts, configs, subprocess cases, JSON results.

Every measurement runs in a fresh subprocess (``python -m benchmarks.cases``): peak RSS
is per process, TensorFlow and Ray keep global state, and a fresh process is what a user
runs. Each benchmark compares cases measured in the same ``make bench`` run on the same
machine, and records the load average before and after each case, because this machine
is shared and its load decides how much a ratio can be trusted.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
RESULT_TAG = "BENCH-RESULT "

# BENCH_QUICK=1 shrinks every benchmark to seconds, for developing the benchmarks
# themselves; its numbers mean nothing and the report marks them.
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")


def proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (index 1 = ppid, 11/12 = utime/
    stime, 13/14 = cutime/cstime, 19 = start time), or None once the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def children_by_parent() -> dict[int, list[int]]:
    """ppid -> child pids of every process now in /proc."""
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit() and (st := proc_stat(int(d))) is not None:
            kids.setdefault(int(st[1]), []).append(int(d))
    return kids


class Poller:
    """Calls ``tick()`` every ``interval`` seconds in a daemon thread while its ``with`` block
    runs, then ``last_tick()`` once on exit (a process read just before it exits still counts).
    The CPU and memory monitors sample /proc this way because the processes they watch are
    not this one: a thread beside the measured work costs it ~nothing."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def tick(self) -> None:
        raise NotImplementedError

    def last_tick(self) -> None:
        pass

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.last_tick()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.tick()


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict:
    """What a reader needs to judge the numbers: cores, CPU, memory, load, versions."""
    from importlib import metadata

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    versions = {}
    for pkg in ("flwr", "tensorflow", "keras", "ray", "numpy"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                                capture_output=True, timeout=10).stdout.strip()
        # Uncommitted changes to tracked code make the commit an incomplete description.
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":!docs/performance.md"], cwd=REPO, text=True,
                               capture_output=True, timeout=10).stdout.strip()
        commit += " + uncommitted changes" if dirty else ""
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return {"cpus": os.cpu_count(), "cpu_model": cpu, "mem_gib": mem_gib,
            "platform": platform.platform(), "python": platform.python_version(),
            "versions": versions, "commit": commit, "loadavg": loadavg()}


def write_result(name: str, payload: dict) -> Path:
    """benchmarks/results/<name>.json with the machine facts and the time of the run."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {"benchmark": name, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "quick": QUICK, "command": " ".join([Path(sys.executable).name, "-m", f"benchmarks.{name}"]),
           "machine": machine(), **payload}
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def run_tagged(argv: list[str], what: str, timeout: float, env_extra: dict | None = None) -> dict:
    """Run a measuring process; return the JSON it printed after RESULT_TAG, plus its wall
    time and the load average before and after. Raises with its output's tail if it fails."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    before = loadavg()
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_TAG)]
    if proc.returncode or not lines:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    result = json.loads(lines[-1][len(RESULT_TAG):])
    result.update({"process_wall_s": round(wall, 2), "loadavg_before": before, "loadavg_after": loadavg()})
    return result


def run_case(case: dict, timeout: float = 1500) -> dict:
    """Run one measurement in a fresh process; return its result dict (plus load and wall)."""
    result = run_tagged([sys.executable, "-m", "benchmarks.cases", json.dumps(case)],
                        f"benchmark case {case}", timeout)
    result["case"] = case
    return result


def emit(result: dict) -> None:
    """Hand a case's result to the parent process (the last tagged line of stdout)."""
    print(RESULT_TAG + json.dumps(result), flush=True)


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def median(xs: list[float]) -> float:
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def run_rows(run_dir: Path) -> list[dict]:
    """A run's metrics.jsonl rows, each round's row merged with its diagnostics.jsonl row: a
    DP run releases no round times or client counts, and writes them there instead."""
    def read(name: str) -> list[dict]:
        f = Path(run_dir) / name
        return [json.loads(ln) for ln in f.read_text().splitlines() if ln] if f.is_file() else []

    diag = {(r.get("model"), r["round"]): r for r in read("diagnostics.jsonl") if r.get("type") == "round"}
    return [{**diag.get((r.get("model"), r.get("round")), {}), **r} if r.get("type") == "round" else r
            for r in read("metrics.jsonl")]


def show(title: str, rows: list[tuple[str, object]]) -> None:
    print(f"\n== {title}" + ("  [BENCH_QUICK: sizes shrunk, numbers not meaningful]" if QUICK else ""))
    for k, v in rows:
        print(f"  {k:<44} {v}")
