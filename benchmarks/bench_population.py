"""Benchmark 4: population scale, lazy synthetic populations of 1k, 100k and 1M clients.

``data.source = "synthetic_lazy"`` (fl_sim/data/population.py): ids from an integer
range, client data generated only for the sampled clients. Each size is a full simulation
(one worker, 100 clients per round, the demo model's dimensions) in a fresh process whose
whole process tree is watched for peak RSS (driver = ServerApp, worker = ClientApp actor,
plus Ray's own processes).

The 1k population runs first and again last, and the 1M figures are compared with the
two 1k runs pooled: a drift of the shared machine's speed during the benchmark then
shows as a difference between the two 1k runs instead of as a population effect.

Targets: at 1M clients, peak RSS <= 1.2x and round time <= 1.1x those at 1k.
"""

from __future__ import annotations

from benchmarks.common import QUICK, median, ratio, run_case, show, write_result

EXPERIMENT = "experiments/demo.toml"
SIZES = [1_000, 100_000, 1_000_000, 1_000]  # 1k again last: see the module docstring
COHORT, ROUNDS = (10, 3) if QUICK else (100, 8)
BASE = ["experiment.compare=[]", "model.kind=\"si_cifg\"", "simulation.num_workers=1",
        "data.source=\"synthetic_lazy\"", "data.synthetic_sentences=20", "data.eval_clients=32",
        "client.local_epochs=1", f"server.clients_per_round={COHORT}"]
TARGETS = {"rss_1m_over_1k_max": 1.2, "round_1m_over_1k_max": 1.1}


def main() -> None:
    rows = []
    for n in SIZES:
        r = run_case({"kind": "sim", "experiment": EXPERIMENT, "rounds": ROUNDS, "rss": True,
                      "overrides": [*BASE, f"data.synthetic_clients={n}"]})
        steady = r["round_times_s"][1:]
        rows.append({"population": n, "round_s_median": round(median(steady), 3), "round_s": r["round_times_s"],
                     "round_cpu_s_median": round(median(r["round_cpu_s"]), 3) if r["round_cpu_s"] else None,
                     **{k: r[k] for k in ("tree_peak_sum_mib", "driver_peak_mib", "worker_peak_mib",
                                          "ray_other_peak_sum_mib", "total_s")},
                     "case": r})
    small_runs = [r for r in rows if r["population"] == SIZES[0]]
    large = next(r for r in rows if r["population"] == max(SIZES))
    small = {  # the 1k runs pooled
        "round_s_median": median([t for r in small_runs for t in r["round_s"][1:]]),
        "round_cpu_s_median": median([c for r in small_runs for c in r["case"]["round_cpu_s"]]),
        **{k: max(r[k] for r in small_runs) for k in ("tree_peak_sum_mib", "driver_peak_mib",
                                                      "worker_peak_mib")}}
    rss_ratio = ratio(large["tree_peak_sum_mib"], small["tree_peak_sum_mib"])
    round_ratio = ratio(large["round_s_median"], small["round_s_median"])
    payload = {"target": TARGETS, "cohort": COHORT, "rounds": ROUNDS,
               "rss_1m_over_1k": rss_ratio, "round_1m_over_1k": round_ratio,
               "round_cpu_1m_over_1k": ratio(large["round_cpu_s_median"] or 0, small["round_cpu_s_median"] or 0),
               "driver_rss_1m_over_1k": ratio(large["driver_peak_mib"], small["driver_peak_mib"]),
               "worker_rss_1m_over_1k": ratio(large["worker_peak_mib"], small["worker_peak_mib"]),
               "first_and_last_1k_round_s": [r["round_s_median"] for r in small_runs],
               "met": bool(rss_ratio <= TARGETS["rss_1m_over_1k_max"]
                           and round_ratio <= TARGETS["round_1m_over_1k_max"]),
               "results": rows}
    path = write_result("bench_population", payload)
    show("population scale (lazy synthetic, %d sampled per round)" % COHORT,
         [(f"{r['population']:>9,} clients", f"round {r['round_s_median']:.2f} s  peak RSS tree "
           f"{r['tree_peak_sum_mib']:.0f} MiB (driver {r['driver_peak_mib']:.0f}, worker "
           f"{r['worker_peak_mib']:.0f})") for r in rows]
         + [("1k first vs last run, round time", " vs ".join(f"{t:.2f} s" for t in
                                                              payload["first_and_last_1k_round_s"])),
            ("1M / 1k peak RSS", rss_ratio), ("1M / 1k round time", round_ratio),
            ("1M / 1k round CPU time (load-robust)", payload["round_cpu_1m_over_1k"]),
            ("targets", f"RSS <= 1.2, round <= 1.1: {'met' if payload['met'] else 'MISSED'}"),
            ("written", path)])


if __name__ == "__main__":
    main()
