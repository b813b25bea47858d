"""Benchmark 2: fl_sim vs the same experiment written as Flower's TensorFlow examples do.

Both train the default demo model (si_cifg) for the same rounds with the same cohort size
on the same data: Shakespeare clients with exactly 128 kept sentences each
(``min_client_sequences = max_sequences_per_client = 128``, 103 of them for training),
so every client runs the same 28 SGD steps (4 epochs x 7 batches of 16) whichever
clients Flower's own node sampling picks. The baseline (benchmarks/flower_stock.py)
builds and compiles its Keras model on every call and uses Flower's default simulation
backend settings; fl_sim runs as configured by the demo (two workers).

Reported: speed-up = stock-Flower time / fl_sim time over the steady rounds 2..R, and
end to end (process wall time, startup included).

Target: >= 5x.
"""

from __future__ import annotations

from benchmarks.common import QUICK, ratio, run_case, show, write_result

EXPERIMENT = "experiments/demo.toml"
COHORT, ROUNDS = (3, 2) if QUICK else (10, 3)
OVERRIDES = ["experiment.compare=[]", "model.kind=\"si_cifg\"", f"server.clients_per_round={COHORT}",
             "data.min_client_sequences=128", "data.max_sequences_per_client=128",
             "simulation.num_workers=2"]
if QUICK:
    OVERRIDES += ["client.local_epochs=1"]
TARGET = 5.0


def main() -> None:
    case = {"experiment": EXPERIMENT, "overrides": OVERRIDES, "rounds": ROUNDS}
    stock = run_case({**case, "kind": "flower"})
    flsim = run_case({**case, "kind": "sim"})
    steady_stock, steady_sim = sum(stock["round_times_s"][1:]), sum(flsim["round_times_s"][1:])
    speedup = ratio(steady_stock, steady_sim)
    payload = {
        "target": {"speedup_min": TARGET}, "met": bool(speedup and speedup >= TARGET),
        "cohort": COHORT, "rounds": ROUNDS, "speedup_steady": speedup,
        "speedup_end_to_end": ratio(stock["process_wall_s"], flsim["process_wall_s"]),
        "stock_flower_round_s": stock["round_times_s"], "fl_sim_round_s": flsim["round_times_s"],
        "cases": {"stock_flower": stock, "fl_sim": flsim},
    }
    path = write_result("bench_flower", payload)
    show("fl_sim vs stock-Flower pattern (same model, data, steps)", [
        ("speed-up, steady rounds 2..R", f"{speedup}x  ({steady_stock:.1f} s vs {steady_sim:.1f} s)"),
        ("speed-up, end to end (startup included)", f"{payload['speedup_end_to_end']}x  "
         f"({stock['process_wall_s']:.0f} s vs {flsim['process_wall_s']:.0f} s)"),
        ("target", f">= {TARGET}x: {'met' if payload['met'] else 'MISSED'}"), ("written", path)])


if __name__ == "__main__":
    main()
