"""How far XLA's rounding moves a demo run, against a tiny perturbation of the initial weights.

``python -m benchmarks.xla_rounds [kind] [rounds]`` (default cifg, 3): in one process, the
demo's first rounds (experiments/demo.toml, its seeded cohorts and batches, FedAvg with
server lr 1 written out) three times: TF graph, XLA, and TF graph again from initial
weights multiplied by (1 + 1.7e-8 * standard normal noise). Prints, after each round, the
relative L2 difference of the global weights of XLA vs graph and of perturbed vs graph.
Not part of ``make bench``: it measures the training dynamics, not speed
(docs/performance.md, "XLA-compiled local step").
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np


def main(argv: list[str]) -> None:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.experimental.enable_op_determinism()

    from clients.trainer import LocalTrainer
    from fl_sim.config import load_experiment
    from fl_sim.data import load_corpus
    from fl_sim.sampling import sample_clients

    kind = argv[0] if argv else "cifg"
    rounds = int(argv[1]) if len(argv) > 1 else 3
    cfg = load_experiment("experiments/demo.toml", ["experiment.compare=[]", f'model.kind="{kind}"'])
    corpus = load_corpus(cfg.data, cfg.experiment.seed)

    def trainer(xla: bool) -> LocalTrainer:
        c = cfg.replace(client=dataclasses.replace(cfg.client, xla=xla))
        return LocalTrainer(c, corpus.vocab.size, corpus.seq_len)

    graph, xla = trainer(False), trainer(True)
    start = graph.get_weights()
    noise = np.random.default_rng(0)
    perturbed = [(w * (1 + 1.7e-8 * noise.standard_normal(w.shape))).astype(np.float32) for w in start]
    runs = {"graph": (graph, start), "xla": (xla, start), "perturbed": (graph, perturbed)}
    weights = {name: w for name, (_, w) in runs.items()}

    def rel(a, b):
        return float(np.sqrt(sum(np.sum((x - y) ** 2) for x, y in zip(a, b)))
                     / np.sqrt(sum(np.sum(x ** 2) for x in a)))

    print(f"{kind}: initial weights, perturbed vs graph {rel(weights['graph'], weights['perturbed']):.2e}")
    for rnd in range(1, rounds + 1):
        cohort = sorted(sample_clients(corpus.train_client_ids, cfg.server.clients_per_round,
                                       cfg.experiment.seed, rnd))
        for name, (tr, _) in runs.items():
            deltas, sizes = [], []
            for cid in cohort:
                d, m = tr.train(weights[name], corpus.client_train(cid), rnd, cid)
                deltas.append(d)
                sizes.append(m["num_examples"])
            n = float(sum(sizes))
            mean = [sum(d[i] * k for d, k in zip(deltas, sizes)) / n for i in range(len(start))]
            weights[name] = [w + d for w, d in zip(weights[name], mean)]
        print(f"{kind}: after round {rnd}, relative L2 difference of the global weights: "
              f"XLA vs graph {rel(weights['graph'], weights['xla']):.2e}, "
              f"perturbed vs graph {rel(weights['graph'], weights['perturbed']):.2e}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
