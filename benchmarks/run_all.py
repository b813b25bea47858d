"""``make bench``: every benchmark in turn, then the table in docs/performance.md.

Each benchmark runs as its own process, so one that fails is reported and the others still
run; the exit status is 1 if any failed. The total time and the load average at start and
end go to benchmarks/results/run_all.json (the issue's budget is 30 minutes on 2 cores).

bench_pfl (fl_sim vs pfl-research) needs ``.venv-pfl``, a 2.4 GB venv ``make bench`` does not
build: it runs when that venv exists (``make bench-pfl`` builds it and runs the benchmark
alone) and is otherwise skipped with a line saying how to get its numbers.
"""

from __future__ import annotations

import subprocess
import sys
import time

from benchmarks.common import REPO, loadavg, write_result

PFL_PY = REPO / ".venv-pfl" / "bin" / "python"

BENCHMARKS = ["bench_overhead", "bench_flower", "bench_workers", "bench_population", "bench_export",
              "bench_xla",
              "profile_step", "bench_deploy"]
OPTIONAL = {"bench_pfl": (PFL_PY, "fl_sim vs pfl-research skipped: .venv-pfl is missing. "
                                  "`make bench-pfl` builds it (2.4 GB, once) and runs that benchmark; "
                                  "later `make bench` runs include it")}


def default_benchmarks(optional: dict = OPTIONAL) -> tuple[list[str], list[str]]:
    """The benchmarks ``make bench`` runs, and a note for each optional one it skips."""
    names, notes = list(BENCHMARKS), []
    for name, (needs, why) in optional.items():
        if needs.exists():
            names.append(name)
        else:
            notes.append(why)
    return names, notes


def main(argv: list[str]) -> int:
    names, notes = (argv, []) if argv else default_benchmarks()
    for note in notes:
        print(f"make bench: {note}", flush=True)
    t0 = time.perf_counter()
    start_load = loadavg()
    steps = []
    for name in names:
        t = time.perf_counter()
        print(f"\n### {name} (load average {loadavg()})", flush=True)
        rc = subprocess.run([sys.executable, "-m", f"benchmarks.{name}"], cwd=REPO).returncode
        steps.append({"benchmark": name, "exit": rc, "seconds": round(time.perf_counter() - t, 1),
                      "loadavg_after": loadavg()})
    total = round(time.perf_counter() - t0, 1)
    write_result("run_all", {"total_seconds": total, "loadavg_start": start_load,
                             "loadavg_end": loadavg(), "steps": steps})
    rc = subprocess.run([sys.executable, "-m", "benchmarks.report"], cwd=REPO).returncode
    failed = [s["benchmark"] for s in steps if s["exit"]]
    print(f"\nmake bench: {total / 60:.1f} min" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    for note in notes:
        print(f"make bench: {note}")
    return 1 if failed or rc else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
