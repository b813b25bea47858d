"""Where a simulated round's time goes beyond the SGD steps (what docs/performance.md cites).

``python -m benchmarks.profile_sim [cohort] [rounds]`` measures, on the default demo model:

1. ``pure``: the compiled local passes alone (as benchmarks/cases.py ``pure``);
2. ``client``: fl_sim's ClientApp ``train`` handler called directly, one message per
   client as the simulation sends them (decode the weights, train, delta, encode the
   reply), under cProfile;
3. ``sim``: the whole simulation under cProfile in this process (the ServerApp side:
   sampling, messages, Flower's polling, aggregation, checkpoint), with round times.

(1) vs (2) is the ClientApp's own overhead; (2) vs the simulation's round time is what
Flower, Ray and the server add. Writes benchmarks/results/profile_sim.json and prints the
top functions by cumulative time.
"""

from __future__ import annotations

import cProfile
import io
import json
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import loadavg, write_result

EXPERIMENT = "experiments/demo.toml"


def _top(prof: cProfile.Profile, n: int = 25) -> str:
    s = io.StringIO()
    pstats.Stats(prof, stream=s).strip_dirs().sort_stats("cumulative").print_stats(n)
    return s.getvalue()


def main(argv: list[str]) -> None:
    cohort = int(argv[0]) if argv else 10
    rounds = int(argv[1]) if len(argv) > 1 else 4
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    overrides = ["experiment.compare=[]", 'model.kind="si_cifg"', "simulation.num_workers=1",
                 f"server.clients_per_round={cohort}", f"experiment.rounds={rounds}", "server.eval_every=0"]

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.experimental.enable_op_determinism()
    from flwr.app import ArrayRecord, Context, RecordDict

    import clients.app as capp
    from fl_sim import protocol
    from fl_sim.config import dumps_toml, load_experiment
    from fl_sim.sampling import sample_clients

    cfg = load_experiment(EXPERIMENT, overrides)
    toml = dumps_toml(cfg)
    _, corpus, trainer = capp.worker_state(toml)
    weights = trainer.get_weights()
    out: dict = {"cohort": cohort, "rounds": rounds, "loadavg_start": loadavg()}

    # 1 + 2: the same cohorts, pure passes vs the ClientApp handler, rounds interleaved
    # so that load changes hit both alike; round 1 warms up (traces) and is not counted.
    context = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})
    from flwr.supercore.task_identity import TaskIdentity

    # What a ServerApp process has set when it builds messages (Flower >= 1.2x).
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    prof = cProfile.Profile()
    pure_t, client_t = [], []
    for rnd in range(1, rounds + 1):
        cohort_ids = sample_clients(corpus.train_client_ids, cohort, cfg.experiment.seed, rnd)
        batches = [tf.constant(trainer.batches_for(corpus.client_train(c), rnd, c)) for c in cohort_ids]
        t0 = time.perf_counter()
        for b in batches:
            trainer.set_weights(weights)
            trainer._local_pass(b)
        trainer.variables[0].numpy()
        t1 = time.perf_counter()
        msgs = [protocol.train_message(1, ArrayRecord(weights), rnd, [c], toml) for c in cohort_ids]
        t2 = time.perf_counter()
        if rnd > 1:
            prof.enable()
        for m in msgs:
            protocol.read_train_reply(capp.train(m, context))
        prof.disable()
        t3 = time.perf_counter()
        if rnd > 1:
            pure_t.append(t1 - t0)
            client_t.append(t3 - t2)
    out["pure_s"] = [round(x, 3) for x in pure_t]
    out["client_handler_s"] = [round(x, 3) for x in client_t]
    out["client_over_pure"] = round(sum(client_t) / sum(pure_t), 3)
    out["client_profile"] = _top(prof)
    print(f"pure {out['pure_s']}\nclient handler {out['client_handler_s']}  "
          f"(x{out['client_over_pure']})")
    print(out["client_profile"])

    # 3: the simulation itself, ServerApp side profiled.
    from fl_sim.app.simulation import simulate

    run_dir = Path(tempfile.mkdtemp(prefix="flsim-profile-"))
    prof = cProfile.Profile()
    try:
        prof.enable()
        simulate(cfg, run_dir, progress=lambda s: None)
        prof.disable()
        rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x]
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    out["sim_round_s"] = [r["round_time_s"] for r in rows if r.get("type") == "round"]
    out["server_profile"] = _top(prof, 40)
    out["loadavg_end"] = loadavg()
    print(f"sim rounds {out['sim_round_s']}")
    print(out["server_profile"])
    write_result("profile_sim", out)


if __name__ == "__main__":
    main(sys.argv[1:])
