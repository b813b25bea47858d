"""Benchmark: `fl-sim run` (Flower's in-process simulation runtime) vs `flwr run .` (the path
Flower 1.42 recommends: a background SuperLink, the app packed into a FAB and installed, a
flwr-simulation process), end to end on the same experiment.

Both run the same engine (RayBackend), so training costs the same; the ratio is what the
``flwr run`` path adds per run (issue 18 §3: "move to the flwr run path if it costs nothing
measurable"). Alternating runs, fl-sim first, so a load drift hits both. The background
SuperLink that ``flwr run`` leaves behind is stopped after each run (only the processes
naming this run's FLWR_HOME, as tests/e2e/test_flwr_run.py does).

    python -m benchmarks.bench_flwr_run
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import QUICK, REPO, loadavg, median, ratio, show, write_result

EXPERIMENT = "experiments/smoke.toml"
REPEATS = 1 if QUICK else 2
TIMEOUT = 900


def _pids_naming(marker: str) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmd:
                out.append(int(entry.name))
    return out


def _stop(marker: str) -> None:
    from fl_sim.app.cluster import stop_pids

    stop_pids(_pids_naming(marker))


def one(kind: str, work: Path) -> dict:
    out = work / "results"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "FLWR_HOME": str(work / "flwr-home")}
    if kind == "fl-sim run":
        cmd = [sys.executable, "-m", "fl_sim.app.cli", "run", EXPERIMENT, "--out", str(out)]
    else:
        flwr = str(Path(sys.executable).parent / "flwr")
        cmd = [flwr, "run", ".", "--stream", "--run-config",
               f'experiment="{EXPERIMENT}" output-dir="{out}"']
    before = loadavg()
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT, env=env)
    finally:
        wall = time.perf_counter() - t0
        _stop(str(work))  # flwr run's background SuperLink outlives the command
    runs = list((out / "smoke").iterdir()) if (out / "smoke").is_dir() else []
    ok = proc.returncode == 0 and len(runs) == 1 and (runs[0] / "summary.json").exists()
    if not ok:
        raise SystemExit(f"bench_flwr_run: {kind} failed (exit {proc.returncode}):\n"
                         f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return {"kind": kind, "wall_s": round(wall, 2), "loadavg_before": before, "loadavg_after": loadavg()}


def main() -> None:
    cases = []
    for _ in range(REPEATS):
        for kind in ("fl-sim run", "flwr run"):
            work = Path(tempfile.mkdtemp(prefix="fl-sim-bench-flwr-"))
            try:
                cases.append(one(kind, work))
            finally:
                shutil.rmtree(work, ignore_errors=True)
    sim = median([c["wall_s"] for c in cases if c["kind"] == "fl-sim run"])
    flwr = median([c["wall_s"] for c in cases if c["kind"] == "flwr run"])
    payload = {"experiment": EXPERIMENT, "repeats": REPEATS, "fl_sim_run_s": sim, "flwr_run_s": flwr,
               "flwr_run_over_fl_sim_run": ratio(flwr, sim), "cases": cases}
    path = write_result("bench_flwr_run", payload)
    show("fl-sim run vs flwr run . (end to end, same experiment and engine)", [
        (f"{EXPERIMENT}: fl-sim run, median of {REPEATS}", f"{sim:.1f} s"),
        (f"{EXPERIMENT}: flwr run ., median of {REPEATS}", f"{flwr:.1f} s"),
        ("flwr run / fl-sim run", payload["flwr_run_over_fl_sim_run"]),
        ("written", str(path))])


if __name__ == "__main__":
    main()
