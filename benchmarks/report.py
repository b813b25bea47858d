"""Write the measured table into docs/performance.md from benchmarks/results/*.json.

Only the block between the two markers is replaced; the analysis around it is written by
hand and kept. Run by ``make bench`` after the benchmarks (``python -m benchmarks.report``).
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.common import REPO, RESULTS

DOC = REPO / "docs" / "performance.md"
BEGIN = "<!-- BEGIN BENCH TABLE: written by `make bench` (benchmarks/report.py); edit outside -->"
END = "<!-- END BENCH TABLE -->"


def _load(name: str) -> dict | None:
    p = RESULTS / f"{name}.json"
    return json.loads(p.read_text()) if p.is_file() else None


def _met(flag) -> str:
    return "met" if flag else "**missed**"


def _load_text(r: dict) -> str:
    loads = [c.get("loadavg_before", [None])[0] for c in _cases(r)] + \
            [c.get("loadavg_after", [None])[0] for c in _cases(r)]
    loads = [x for x in loads if x is not None] or [r["machine"]["loadavg"][0]]
    return f"{min(loads):.1f}-{max(loads):.1f}"


def _cases(r: dict) -> list[dict]:
    out = []
    for row in r.get("results", [r]):
        for c in (row.get("cases") or {}).values():
            out.extend(c if isinstance(c, list) else [c])  # repeated runs of one kind
        if "case" in row and isinstance(row["case"], dict) and "loadavg_before" in row["case"]:
            out.append(row["case"])
    return out


def _deploy_rows(d: dict, m: dict) -> list[str]:
    out = []
    target = d["target"]["warm_over_sim_max_cohort_100"]
    for row in d["results"]:
        big = row["cohort"] == 100
        w = row["warm_parts"]
        out.append(f"| deployment (1 SuperNode, warm trainer) / simulation (1 worker), cohort {row['cohort']} "
                   f"(rounds 2..{row['rounds']}) | {row['warm_over_sim']:.2f} "
                   + (f"| <= {target} | {_met(row['warm_over_sim'] <= target)} " if big else "| | ")
                   + f"| {_load_text({'results': [row], 'machine': m})} |")
        if row.get("warm_over_sim_cpu") is not None:
            out.append(f"| deployment / simulation, cohort {row['cohort']}: same, in CPU seconds (load-robust) "
                       f"| {row['warm_over_sim_cpu']:.2f} | | | |")
        out.append(f"| deployment, cohort {row['cohort']}: Flower's per-message process start (median) "
                   f"| {w['process_s_median']:.2f} s of a {w['round_s_median']:.2f} s round | | | |")
        if row.get("sums_over_sim") is not None:
            out.append(f"| deployment with `deployment.node_sums = true` / simulation, cohort {row['cohort']} "
                       f"(rounds 2..{row['rounds']}) | {row['sums_over_sim']:.2f} (CPU {row['sums_over_sim_cpu']:.2f}) "
                       + (f"| <= {target} | {_met(row['sums_over_sim'] <= target)} " if big else "| | ")
                       + "| |")
        if row.get("cold_over_sim") is not None:
            out.append(f"| deployment with `deployment.warm_trainer = false` / simulation, cohort {row['cohort']} "
                       f"| {row['cold_over_sim']:.2f} | | | |")
        if big and row.get("sim_runs_spread", 1.0) > d["target"].get("sim_runs_spread_max", float("inf")):
            out.append(f"| cohort {row['cohort']}: the two simulations differ x{row['sim_runs_spread']:.2f} "
                       "(the load moved): read the CPU-seconds ratios | | | | |")
    return out


def _pfl_rows(r: dict, m: dict) -> list[str]:
    target = r["target"]["fl_sim_over_pfl_round_max"]
    runs = len(r["cases"]["pfl"])
    b = r["breakdown"]

    def mean(xs):
        return sum(xs) / len(xs) if xs else float("nan")  # nan: that run was not made

    return [
        f"| vs pfl-research {r['pfl_versions']['pfl']}, cohort {r['cohort']}: fl_sim / pfl time per round "
        f"(rounds 2..{r['rounds']}, {runs} run{'s' if runs > 1 else ''} each) | {r['fl_sim_over_pfl_round']:.2f} "
        f"({mean(r['fl_sim_round_s']):.2f} vs {mean(r['pfl_round_s']):.2f} s) | <= {target} "
        f"| {_met(r['met'])} | {_load_text(r)} |",
        f"| vs pfl-research: same, in CPU seconds (load-robust) | {r['fl_sim_over_pfl_round_cpu']:.2f} | | | |",
        f"| vs pfl-research: fl_sim / pfl end to end (startup included, same job) "
        f"| {r['fl_sim_over_pfl_end_to_end']:.2f} | | | |",
        f"| vs pfl-research: CPU seconds per round, local training + the rest (fl_sim; pfl) "
        f"| {mean(b['fl_sim_local_cpu_s']):.2f} + {mean(b['fl_sim_rest_cpu_s']):.2f}; "
        f"{mean(b['pfl_local_cpu_s']):.2f} + {mean(b['pfl_rest_cpu_s']):.2f} | | | |",
    ]


def table() -> str:
    lines = []
    runs = {n: _load(n) for n in ("bench_overhead", "bench_flower", "bench_workers",
                                  "bench_population", "bench_export", "bench_xla", "profile_step",
                                  "bench_deploy", "bench_pfl",
                                  "run_all")}
    any_r = runs["run_all"] or next((r for r in runs.values() if r), None)  # the run's own date
    if any_r is None:
        return "No results yet: run `make bench`."
    m = any_r["machine"]
    ra = runs["run_all"]
    lines += [f"Measured {any_r['date']} with `make bench`"
              + (f" ({ra['total_seconds'] / 60:.1f} min in all)" if ra else "") + ", commit "
              f"`{m['commit']}`, on {m['cpus']} CPU cores ({m['cpu_model'] or 'unknown CPU'}), "
              f"{m['mem_gib']} GiB RAM, {m['platform']}; Python {m['python']}, "
              + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".",
              ""]
    if ra:
        lines += [f"Machine load (1-minute load average) at the start {ra['loadavg_start'][0]:.1f}, at the end "
                  f"{ra['loadavg_end'][0]:.1f}: the machine is shared, so a load above the "
                  f"{m['cpus']} cores means the benchmark got less than the whole machine.", ""]
    if any(r and r.get("quick") for r in runs.values()):
        lines += ["**BENCH_QUICK results: sizes shrunk for development, the numbers mean nothing.**", ""]
    lines += ["| benchmark | measured | target | | load during run |", "|---|---|---|---|---|"]
    o = runs["bench_overhead"]
    if o:
        for row in o["results"]:
            reps = f", {row['repeats']} runs" if row.get("repeats", 1) > 1 else ""
            lines.append(f"| overhead, cohort {row['cohort']}: sim / pure compute (rounds 2..{row['rounds']}{reps}) "
                         f"| {row['sim_over_pure']:.3f} | <= {o['target']['sim_over_pure_max']} "
                         f"| {_met(row['sim_over_pure'] <= o['target']['sim_over_pure_max'])} | {_load_text({'results': [row], 'machine': m})} |")
            if row.get("sim_over_pure_cpu") is not None:
                lines.append(f"| overhead, cohort {row['cohort']}: same, in CPU seconds (load-robust) "
                             f"| {row['sim_over_pure_cpu']:.3f} | <= {o['target']['sim_over_pure_max']} "
                             f"| {_met(row['sim_over_pure_cpu'] <= o['target']['sim_over_pure_max'])} | |")
    f = runs["bench_flower"]
    if f:
        lines.append(f"| vs stock-Flower pattern, cohort {f['cohort']}: speed-up (rounds 2..{f['rounds']}) "
                     f"| {f['speedup_steady']:.1f}x | >= {f['target']['speedup_min']:.0f}x | {_met(f['met'])} | {_load_text(f)} |")
        lines.append(f"| vs stock-Flower pattern: speed-up end to end, startup included | "
                     f"{f['speedup_end_to_end']:.1f}x | | | |")
    w = runs["bench_workers"]
    if w:
        lines.append(f"| 2 workers vs 1, cohort {w['cohort']}: speed-up (rounds 2..{w['rounds']}) "
                     f"| {w['speedup_steady']:.2f}x | >= {w['target']['speedup_min']}x | {_met(w['met'])} | {_load_text(w)} |")
    x = runs["bench_xla"]
    if x:
        for row in x["results"]:
            target = row["model"] == x["target"]["model"]
            lines.append(f"| local step: XLA vs graph, {row['model']} (1 thread, op determinism) "
                         f"| {row['speedup_wall']:.2f}x ({row['graph_ms_per_step']:.1f} vs {row['xla_ms_per_step']:.1f} ms per step) "
                         + (f"| >= {x['target']['speedup_min']}x | {_met(row['speedup_wall'] >= x['target']['speedup_min'])} "
                            if target else "| | ")
                         + f"| {_load_text({'results': [{'cases': {'xla': row}}], 'machine': m})} |")
            lines.append(f"| local step: same, in CPU seconds (load-robust), {row['model']} | {row['speedup_cpu']:.2f}x | | | |")
            lines.append(f"| XLA compile per worker (first call), {row['model']} | {row['first_call_s']['xla']:.1f} s "
                         f"(graph trace {row['first_call_s']['graph']:.1f} s) | | | |")
    ps = runs["profile_step"]
    if ps:
        lines.append(f"| local step, CIFG: output layer's share of the graph step (CPU) "
                     f"| {ps['output_share_graph']:.2f} ({ps['output_layer_graph_cpu_ms']:.2f} of "
                     f"{ps['step_graph_cpu_ms']:.2f} ms) | | | |")
        lines.append(f"| local step, CIFG: XLA's bound if the rest of the step were free "
                     f"| {ps['xla_speedup_bound']:.2f}x | | | |")
    d = runs["bench_deploy"]
    if d:
        lines += _deploy_rows(d, m)
    if runs["bench_pfl"]:
        lines += _pfl_rows(runs["bench_pfl"], m)
    p = runs["bench_population"]
    if p:
        t = p["target"]
        lines.append(f"| population 1M vs 1k: peak RSS (process tree) | {p['rss_1m_over_1k']:.3f}x "
                     f"| <= {t['rss_1m_over_1k_max']}x | {_met(p['rss_1m_over_1k'] <= t['rss_1m_over_1k_max'])} | {_load_text(p)} |")
        lines.append(f"| population 1M vs 1k: time per round | {p['round_1m_over_1k']:.3f}x "
                     f"| <= {t['round_1m_over_1k_max']}x | {_met(p['round_1m_over_1k'] <= t['round_1m_over_1k_max'])} | |")
        if p.get("round_cpu_1m_over_1k") is not None:
            lines.append(f"| population 1M vs 1k: CPU seconds per round (load-robust) | {p['round_cpu_1m_over_1k']:.3f}x "
                         f"| <= {t['round_1m_over_1k_max']}x | {_met(p['round_cpu_1m_over_1k'] <= t['round_1m_over_1k_max'])} | |")
        pooled = (" The 1k population ran first and last; the ratios above use both runs pooled."
                  if p.get("first_and_last_1k_round_s") else "")
        lines += ["", f"Population scale, {p['cohort']} clients sampled per round (median of rounds "
                  f"2..{p['rounds']}).{pooled}", "",
                  "| clients | time per round | CPU per round | peak RSS, whole tree | driver (ServerApp) | ClientApp worker | Ray's other processes |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]
        seen = set()
        for row in p["results"]:
            cpu = f"{row['round_cpu_s_median']:.2f} s" if row.get("round_cpu_s_median") is not None else "-"
            again = " (again, last)" if row["population"] in seen else ""
            seen.add(row["population"])
            lines.append(f"| {row['population']:,}{again} | {row['round_s_median']:.2f} s | {cpu} | {row['tree_peak_sum_mib']:.0f} MiB "
                         f"| {row['driver_peak_mib']:.0f} MiB | {row['worker_peak_mib']:.0f} MiB "
                         f"| {row['ray_other_peak_sum_mib']:.0f} MiB |")
    if o:
        lines += ["", "Overhead detail (seconds per steady round; a mean over the runs where a cohort "
                  "was run more than once):", "",
                  "| cohort | SGD steps per round | pure compute, wall | fl_sim simulation, wall | pure runs' spread "
                  "| pure, CPU | simulation, CPU (all processes) | of which outside the ClientApp worker |",
                  "|---:|---|---|---|---:|---|---|---|"]
        for row in o["results"]:
            def secs(xs):
                return ", ".join(f"{x:.2f}" for x in xs or [])
            lines.append(f"| {row['cohort']} | {', '.join(map(str, row['steps_per_round'][1:]))} "
                         f"| {secs(row['pure_round_s'])} | {secs(row['sim_round_s'])} | x{row.get('pure_runs_spread', row.get('pure_runs_differ_by'))} "
                         f"| {secs(row.get('pure_round_cpu_s'))} | {secs(row.get('sim_round_cpu_s'))} "
                         f"| {secs(row.get('sim_round_cpu_outside_worker_s')) or '-'} |")
    e = runs["bench_export"]
    if e:
        lines += ["", f"TFLite export ({e['status']}"
                  + (f"; {e.get('model')}, {e.get('parameters'):,} parameters, median of {e.get('latency_runs')} runs, "
                     "1 thread" if e.get("variants") else "") + "):", ""]
        if e.get("variants"):
            lines += ["| variant | size | size / float32 | per-token latency (builtin kernels) | with XNNPACK |",
                      "|---|---:|---:|---:|---:|"]
            for v in e["variants"]:
                def ms(x):
                    return f"{x:.3f} ms" if x is not None else "-"
                size = f"{v['size_bytes'] / 1024:.0f} KiB" if v["size_bytes"] else "-"
                rel = f"{v['size_ratio_to_float32']:.2f}" if v.get("size_ratio_to_float32") else "-"
                lines.append(f"| {v['format']} | {size} | {rel} | {ms(v['per_token_ms'])} | {ms(v['per_token_ms_xnnpack'])} |")
        else:
            lines.append(f"Not measured: {e.get('reason') or e.get('stage', '')}.")
    lines += ["", "Raw numbers, every case's round times and load averages: `benchmarks/results/*.json` "
              "(written by each run; git-ignored, like `results/`)."]
    return "\n".join(lines)


def main() -> None:
    text = DOC.read_text(encoding="utf-8") if DOC.is_file() else f"# Performance\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text = text.rstrip() + f"\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{BEGIN}\n{table()}\n{END}{tail}", encoding="utf-8")
    print(f"wrote {DOC}")
    from benchmarks import summary_json

    print(f"wrote {summary_json.write()}")


if __name__ == "__main__":
    main()
