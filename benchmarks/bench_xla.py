"""Benchmark 6: the local pass compiled by XLA (``client.xla = true``) vs the TF graph one.

The demo's models (experiments/demo.toml: embedding 64, CIFG 128, projection 64, vocabulary
5,004, batch 16, sequence 20), CIFG and SI-CIFG, each in its own fresh process
(benchmarks/cases.py ``xla``) with a simulation worker's TF settings: one thread, op
determinism on. In that process two trainers, graph and XLA, run the same cohorts' local
passes from the same weights, alternating round by round, so the ratio is taken between
passes measured within seconds of each other on this shared machine. Reported: the
speed-up in wall time and in CPU time, the milliseconds per SGD step, the one-off first
call (trace, and for XLA the compile) per worker, and the threads XLA adds.

Target (issue 12): XLA-vs-graph speed-up of the local pass >= 1.3x on the CIFG model.
"""

from __future__ import annotations

from benchmarks.common import QUICK, run_case, show, write_result

EXPERIMENT = "experiments/demo.toml"
KINDS = ("cifg", "si_cifg")
COHORT, ROUNDS, REPEATS = (2, 1, 1) if QUICK else (10, 3, 2)
TARGET = 1.3


def measure(kind: str) -> dict:
    overrides = ["experiment.compare=[]", f"model.kind=\"{kind}\"",
                 f"server.clients_per_round={COHORT}"]
    if QUICK:
        overrides += ["client.max_steps=2", "client.local_epochs=1"]
    return run_case({"kind": "xla", "experiment": EXPERIMENT, "overrides": overrides,
                     "rounds": ROUNDS, "repeats": REPEATS})


def main() -> None:
    rows = {kind: measure(kind) for kind in KINDS}
    cifg = rows["cifg"]["speedup_wall"]
    payload = {"target": {"speedup_min": TARGET, "model": "cifg"}, "met": cifg >= TARGET,
               "cohort": COHORT, "rounds": ROUNDS, "repeats": REPEATS,
               "results": [{"model": k, **v} for k, v in rows.items()]}
    path = write_result("bench_xla", payload)
    lines = []
    for kind, r in rows.items():
        lines += [(f"{kind}: XLA vs graph, local pass", f"{r['speedup_wall']}x wall, {r['speedup_cpu']}x CPU "
                   f"({r['graph_ms_per_step']} vs {r['xla_ms_per_step']} ms per step, "
                   f"CPU {r['graph_cpu_ms_per_step']} vs {r['xla_cpu_ms_per_step']} ms; {r['steps']} steps)"),
                  (f"{kind}: first call per worker", f"graph {r['first_call_s']['graph']} s, "
                   f"XLA {r['first_call_s']['xla']} s"),
                  (f"{kind}: threads", f"{r['threads']}; busy during XLA passes: "
                   f"{r['xla_pass_cpu_by_thread_s'][:4]}")]
    show("local step: XLA vs graph", lines + [
        ("target", f">= {TARGET}x on cifg: {'met' if payload['met'] else 'MISSED'}"), ("written", path)])


if __name__ == "__main__":
    main()
