"""Benchmark 7 (issue 18 §4): fl_sim vs Apple's pfl-research on the same job.

The job: the benchmark model (the previous demo model: SI-CIFG, embedding 64, CIFG 128 with
projection 64, vocabulary 5,000) on the shipped Shakespeare clients, FedAvg with plain-SGD
clients and a server SGD step, no DP; a cohort of 10 per round, each client with exactly 128
kept sentences (``data.min_client_sequences = data.max_sequences_per_client = 128``; the
export holds 128 training sequences for each of the 136 clients), so every client runs
4 epochs x 8 batches of 16 = 32 SGD steps in both frameworks (``client.max_steps = 32``
does not cut them). Round 1 is the warm-up (tracing, Ray and worker start in fl_sim, graph
building and pfl's one per-user evaluation in pfl); rounds 2..R are measured.

fl_sim side: ``fl-sim run``'s code path (benchmarks/cases.py ``sim``) with the demo's two
simulation workers (one TF thread each). pfl side: benchmarks/pfl_run.py in ``.venv-pfl`` (pfl 0.6.0, tf_keras; build it
with ``bash scripts/make_pfl_venv.sh``), reading the job fl_sim exports
(benchmarks/pfl_export.py): the same clients' tokens, the same cohorts in every round, the
same initial weights, a tf_keras rewrite of the same model (benchmarks/pfl_model.py; its
parameter count and forward pass are checked against fl_sim's). pfl runs with its
defaults (one process, TensorFlow's default thread pools: one thread per core), as a pfl
user runs it. So each framework runs as its users get it, and both may use both cores.

Both run back to back in one process order fl_sim, pfl, pfl, fl_sim (ABBA: a load that
drifts linearly hits both sides alike), then one pure-compute run of fl_sim's local passes
(cases.py ``pure``: one process, one thread). CPU seconds split each framework's round into
local training and the rest: for fl_sim the pure run's CPU against the whole simulation
tree's (driver, workers, Ray), for pfl its ``train_one_user`` timer against its process.

Reported: fl_sim / pfl seconds per steady round (mean over the runs), the same in CPU
seconds, and end to end (process start to the end of round R: fl_sim's extra evaluated
round, which the pfl job does not have, is taken off its process time).

Target: fl_sim / pfl <= 1.0 per round.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import QUICK, REPO, median, ratio, run_case, run_tagged, show, write_result

EXPERIMENT = "experiments/demo.toml"
COHORT, ROUNDS = (3, 2) if QUICK else (10, int(os.environ.get("BENCH_PFL_ROUNDS", "5")))
# Runs per framework: 2 = fl_sim, pfl, pfl, fl_sim (ABBA); 1 = fl_sim, pfl (for a machine so
# loaded that four runs do not fit the time at hand). BENCH_PFL_ROUNDS likewise (1 warm-up).
REPEATS = 1 if QUICK else int(os.environ.get("BENCH_PFL_REPEATS", "2"))
OVERRIDES = ["experiment.compare=[]", "model.kind=\"si_cifg\"", f"server.clients_per_round={COHORT}",
             "data.min_client_sequences=128", "data.max_sequences_per_client=128",
             "simulation.num_workers=2"]
if QUICK:
    OVERRIDES += ["client.local_epochs=1"]
PFL_VENV = REPO / os.environ.get("PFL_VENV", ".venv-pfl")
PFL_PY = PFL_VENV / "bin" / "python"
BUILD_HINT = "build it with `bash scripts/make_pfl_venv.sh` (about 2 GB; or `make bench-pfl`)"
TARGET = 1.0


def export(path: Path) -> dict:
    """fl_sim exports the job (in a subprocess: this parent never imports TensorFlow)."""
    code = ("import json, sys; from pathlib import Path; from benchmarks.cases import load_cfg; "
            "from benchmarks.pfl_export import export_job; "
            "case = json.loads(sys.argv[1]); "
            "print(json.dumps(export_job(load_cfg(case), case['rounds'], Path(sys.argv[2]))))")
    case = {"experiment": EXPERIMENT, "overrides": OVERRIDES, "rounds": ROUNDS}
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(case), str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=900,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if proc.returncode:
        raise RuntimeError(f"exporting the job failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_pfl(job: Path, timeout: float = 3600) -> dict:
    return run_tagged([str(PFL_PY), "-m", "benchmarks.pfl_run", str(job)], "the pfl run", timeout,
                      {"CUDA_VISIBLE_DEVICES": ""})


def run_sim(case: dict) -> dict:
    """cases.py ``sim``, started again once if Ray's node missed its fixed 30 s startup
    window (ray/_private/node.py), which a loaded shared machine can make it miss."""
    try:
        return run_case(case)
    except RuntimeError as e:
        if "timed out during startup" not in str(e):
            raise
        print("bench_pfl: Ray's node timed out during startup (machine load); starting the case again",
              file=sys.stderr, flush=True)
        return {**run_case(case), "ray_startup_retried": True}


def _avg(xs: list[float] | None) -> str:
    return f"{sum(xs) / len(xs):.2f}" if xs else "-"


def _mean(xss: list[list[float]]) -> list[float]:
    return [round(sum(xs) / len(xs), 4) for xs in zip(*xss)]


def main() -> int:
    if not PFL_PY.exists():
        print(f"bench_pfl: error: {PFL_VENV.name} is missing; {BUILD_HINT}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-pfl-") as tmp:
        job = Path(tmp) / "job.npz"
        meta = export(job)
        case = {"experiment": EXPERIMENT, "overrides": OVERRIDES, "rounds": ROUNDS}
        order = ["fl_sim", "pfl", "pfl", "fl_sim"][:2 * REPEATS] if REPEATS <= 2 else \
            ["fl_sim", "pfl", "pfl", "fl_sim"] * (REPEATS // 2) + ["fl_sim", "pfl"] * (REPEATS % 2)
        order.append("fl_sim pure")
        sims, pfls, pure = [], [], None
        for side in order:
            if side == "fl_sim":
                sims.append(run_sim({**case, "kind": "sim"}))
            elif side == "pfl":
                pfls.append(run_pfl(job))
            else:
                pure = run_case({**case, "kind": "pure"})
            if sims and pfls:
                # Written after every case: a run stopped early (a loaded machine) keeps its numbers.
                payload = summarize(meta, sims, pfls, pure, order)
                write_result("bench_pfl", payload)
    return report(payload)


def summarize(meta: dict, sims: list[dict], pfls: list[dict], pure: dict | None, order: list[str]) -> dict:
    steady = slice(1, None)
    sim_round = _mean([s["round_times_s"][steady] for s in sims])
    pfl_round = _mean([p["round_times_s"][steady] for p in pfls])
    pfl_local = _mean([p["local_train_s"][steady] for p in pfls])
    pfl_local_cpu = _mean([p["local_train_cpu_s"][steady] for p in pfls])
    pure_round = pure["round_times_s"][steady] if pure else None
    pure_cpu = pure["round_cpu_s"][steady] if pure else None
    sim_cpu = _mean([s["round_cpu_s"] for s in sims])  # rounds 2..R (cases.py)
    pfl_cpu = _mean([p["round_cpu_s"][steady] for p in pfls])
    # End to end, the same job: fl_sim's process minus its extra, evaluated last round.
    sim_e2e = [round(s["process_wall_s"] - s["final_round_with_eval_s"], 2) for s in sims]
    pfl_e2e = [p["process_wall_s"] for p in pfls]
    per_round = ratio(sum(sim_round), sum(pfl_round))
    params = {"fl_sim": meta["parameters"], "pfl": pfls[0]["parameters"]}
    done = [*(["fl_sim"] * len(sims)), *(["pfl"] * len(pfls)), *(["fl_sim pure"] if pure else [])]
    payload = {
        "target": {"fl_sim_over_pfl_round_max": TARGET}, "met": bool(per_round and per_round <= TARGET),
        "cohort": COHORT, "rounds": ROUNDS, "job": meta,
        "complete": sorted(done) == sorted(order),
        "parameters": params, "parameters_equal": params["fl_sim"] == params["pfl"],
        "ref_logits_max_abs_diff": max(p["ref_logits_max_abs_diff"] for p in pfls),
        "steps_per_round": pfls[0]["steps_per_round"],
        "fl_sim_over_pfl_round": per_round,
        "fl_sim_over_pfl_round_cpu": ratio(sum(sim_cpu), sum(pfl_cpu)),
        "fl_sim_over_pfl_end_to_end": ratio(median(sim_e2e), median(pfl_e2e)),
        "fl_sim_round_s": sim_round, "pfl_round_s": pfl_round,
        "fl_sim_round_cpu_s": sim_cpu, "pfl_round_cpu_s": pfl_cpu,
        "fl_sim_end_to_end_s": sim_e2e, "pfl_end_to_end_s": pfl_e2e,
        # Where a round's time goes: local SGD vs everything else the framework does.
        # (pure is one thread in one process: its wall time is not fl_sim's two workers')
        "breakdown": {"fl_sim_local_cpu_s": pure_cpu,
                      "fl_sim_rest_cpu_s": [round(a - b, 4) for a, b in zip(sim_cpu, pure_cpu)] if pure else None,
                      "fl_sim_pure_local_round_s": pure_round,
                      "pfl_local_cpu_s": pfl_local_cpu,
                      "pfl_rest_cpu_s": [round(a - b, 4) for a, b in zip(pfl_cpu, pfl_local_cpu)],
                      "pfl_local_train_round_s": pfl_local,
                      "pfl_rest_round_s": [round(a - b, 4) for a, b in zip(pfl_round, pfl_local)],
                      "pfl_startup_s": [p["startup_s"] for p in pfls]},
        "pfl_versions": pfls[0]["versions"], "pfl_tf_threads": pfls[0]["tf_threads"],
        "order": order,
        "cases": {"fl_sim": sims, "pfl": pfls, **({"fl_sim_pure": pure} if pure else {})},
    }
    problems = []
    if not payload["parameters_equal"]:
        problems.append(f"parameter counts differ: {params}")
    # Same TF version and kernels on both sides, same weights: the logits agree to float32
    # rounding of a few matmuls (measured ~1e-6); 1e-4 flags a different model, not noise.
    if payload["ref_logits_max_abs_diff"] > 1e-4:
        problems.append(f"forward passes differ by {payload['ref_logits_max_abs_diff']:.2e}")
    if not all(p["weights_moved"] for p in pfls):
        problems.append("pfl's global weights did not change")
    payload["problems"] = problems
    return payload


def report(payload: dict) -> int:
    path = write_result("bench_pfl", payload)
    params, problems = payload["parameters"], payload["problems"]
    sim_round, pfl_round = payload["fl_sim_round_s"], payload["pfl_round_s"]
    b = payload["breakdown"]
    sims = payload["cases"]["fl_sim"]
    last = (payload["cases"].get("fl_sim_pure") or payload["cases"]["pfl"][-1])["loadavg_after"]
    show("fl_sim vs pfl-research (same model, data, cohorts, steps)", [
        ("parameters (fl_sim, pfl)", f"{params['fl_sim']:,}, {params['pfl']:,}"),
        ("forward pass, max |logit difference|", f"{payload['ref_logits_max_abs_diff']:.1e}"),
        ("fl_sim / pfl, seconds per steady round", f"{payload['fl_sim_over_pfl_round']}  "
         f"({sum(sim_round) / len(sim_round):.2f} s "
         f"vs {sum(pfl_round) / len(pfl_round):.2f} s per round)"),
        ("fl_sim / pfl, CPU seconds per round", payload["fl_sim_over_pfl_round_cpu"]),
        ("fl_sim / pfl, end to end (same job)", f"{payload['fl_sim_over_pfl_end_to_end']}  "
         f"({median(payload['fl_sim_end_to_end_s']):.0f} s vs {median(payload['pfl_end_to_end_s']):.0f} s)"),
        ("CPU s per round, local training: fl_sim (pure run), pfl",
         f"{_avg(b['fl_sim_local_cpu_s'])}, {_avg(b['pfl_local_cpu_s'])}"),
        ("CPU s per round, the rest: fl_sim, pfl", f"{_avg(b['fl_sim_rest_cpu_s'])}, {_avg(b['pfl_rest_cpu_s'])}"),
        ("load average (start, end)", f"{sims[0]['loadavg_before']} -> {last}"),
        ("target", f"<= {TARGET}: {'met' if payload['met'] else 'MISSED'}"),
        *((("PROBLEM", p) for p in problems)), ("written", path)])
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
