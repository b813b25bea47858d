"""Benchmark 3: one vs two simulation workers (Ray actors) on the same experiment.

The default demo model on its Shakespeare data, the same cohorts and steps; the speed-up
is the one-worker time over the two-worker time on the steady rounds 2..R. On a machine
with two cores that other jobs share, two workers can only gain what idle cores there are:
compare the recorded load averages with the core count.

Target: >= 1.7x.
"""

from __future__ import annotations

from benchmarks.common import QUICK, ratio, run_case, show, write_result

EXPERIMENT = "experiments/demo.toml"
COHORT, ROUNDS = (4, 3) if QUICK else (20, 8)
BASE = ["experiment.compare=[]", "model.kind=\"si_cifg\"", f"server.clients_per_round={COHORT}"]
if QUICK:
    BASE += ["client.max_steps=2", "client.local_epochs=1"]
TARGET = 1.7


def main() -> None:
    runs = {}
    for workers in (1, 2):
        runs[workers] = run_case({"kind": "sim", "experiment": EXPERIMENT, "rounds": ROUNDS,
                                  "overrides": [*BASE, f"simulation.num_workers={workers}"]})
    one, two = sum(runs[1]["round_times_s"][1:]), sum(runs[2]["round_times_s"][1:])
    speedup = ratio(one, two)
    payload = {"target": {"speedup_min": TARGET}, "met": bool(speedup and speedup >= TARGET),
               "cohort": COHORT, "rounds": ROUNDS, "speedup_steady": speedup,
               "one_worker_round_s": runs[1]["round_times_s"], "two_workers_round_s": runs[2]["round_times_s"],
               "cases": {"one_worker": runs[1], "two_workers": runs[2]}}
    path = write_result("bench_workers", payload)
    show("1 vs 2 simulation workers", [
        ("speed-up, steady rounds 2..R", f"{speedup}x  ({one:.1f} s vs {two:.1f} s)"),
        ("load average during 2-worker run", f"{runs[2]['loadavg_before']} -> {runs[2]['loadavg_after']}"),
        ("target", f">= {TARGET}x: {'met' if payload['met'] else 'MISSED'}"), ("written", path)])


if __name__ == "__main__":
    main()
