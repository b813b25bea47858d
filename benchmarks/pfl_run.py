"""pfl-research's side of benchmarks/bench_pfl.py; runs in ``.venv-pfl``, never imports fl_sim.

``.venv-pfl/bin/python -m benchmarks.pfl_run JOB.npz [--threads N]`` trains the job fl_sim
exported (benchmarks/pfl_export.py) with pfl 0.6's own simulation loop, written as pfl's
TF benchmark (``benchmarks/lm/tf/train.py`` in apple/pfl-research) writes one: a tf_keras
model compiled with a local SGD optimizer, wrapped in ``pfl.model.tensorflow.TFModel`` with
a central SGD optimizer, ``FederatedAveraging`` over a ``SimulatedBackend`` on a
``FederatedDataset`` of per-user ``pfl.data.Dataset``s, no postprocessors (no DP, no
weighting strategy: FedAvg's plain mean, as fl_sim's with equal-sized clients).

The same job as fl_sim's run: the same model and initial weights (checked: parameter count
and the forward pass on four sequences), the same users in every round (a user sampler
that replays fl_sim's cohorts), the same local epochs, batch size and learning rates. Each
user's sequences are padded with all-PAD rows to a whole number of batches, as fl_sim's
``pad_to_batches`` does, so both frameworks run the same number of steps on batches of one
shape ([batch, seq_len]); the masked loss ignores the padding. The one difference: pfl
iterates a user's data in the same order every epoch, fl_sim reshuffles it per epoch (the
same arithmetic per step either way).

Measured: wall and CPU seconds per round (``after_central_iteration`` marks), the wall and
CPU seconds spent in local training (``train_one_user``: the SGD steps and the model
difference) per round, process startup to the end of the last round. Prints one ``BENCH-RESULT {json}``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

T_START = time.perf_counter()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="pfl_run", description=__doc__.splitlines()[0])
    ap.add_argument("job", type=Path, help="the .npz benchmarks/pfl_export.py wrote")
    ap.add_argument("--threads", type=int, default=0,
                    help="TensorFlow intra/inter-op threads (0: TensorFlow's default, as a pfl user gets)")
    args = ap.parse_args(argv)
    if not args.job.is_file():
        print(f"pfl_run: error: job file {args.job} not found (bench_pfl.py writes it)", file=sys.stderr)
        return 2

    # pfl 0.6 is written for Keras 2 (tf.keras variables named "layer/kernel:0", unique per
    # model, key its parameter map); TensorFlow 2.21's tf.keras is Keras 3 unless this is
    # set, and then it is the tf_keras package, which pfl_model.py builds with. Set here,
    # before TensorFlow's import, not at module import: the unit tests import this module,
    # and a variable set there leaked into every later subprocess (the TF 2.15 reference
    # venv has no tf_keras, so tensorflow-privacy failed to import).
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import numpy as np
    import tensorflow as tf
    import tf_keras

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    from importlib import metadata

    from pfl.aggregate.simulate import SimulatedBackend
    from pfl.algorithm import FederatedAveraging, NNAlgorithmParams
    from pfl.callback.base import TrainingProcessCallback
    from pfl.data.dataset import Dataset
    from pfl.data.federated_dataset import FederatedDataset
    from pfl.hyperparam import NNEvalHyperParams, NNTrainHyperParams
    from pfl.metrics import Metrics
    from pfl.model.tensorflow import TFModel

    from benchmarks.common import emit
    from benchmarks.pfl_export import load_job
    from benchmarks.pfl_model import PAD_ID, build_model, masked_mean_loss, param_count

    job = load_job(args.job)
    m = job["meta"]
    if m["client_optimizer"] != "sgd" or m["server_optimizer"] != "sgd":
        print(f"pfl_run: error: only SGD clients and server are benchmarked, got client "
              f"{m['client_optimizer']!r}, server {m['server_optimizer']!r}", file=sys.stderr)
        return 2
    bsz, epochs = m["batch_size"], m["local_epochs"]
    steps_of = {cid: -(-len(s) // bsz) * epochs for cid, s in job["clients"].items()}
    capped = sorted({c for row in job["cohorts"] for c in row if m["max_steps"] and steps_of[c] > m["max_steps"]})
    if capped:
        # pfl caps steps per epoch (local_num_steps), fl_sim caps the whole pass (max_steps).
        print(f"pfl_run: error: clients {capped[:5]} would hit client.max_steps = {m['max_steps']} "
              "in fl_sim, which pfl cannot express; pick a job whose clients all run whole epochs",
              file=sys.stderr)
        return 2

    def padded(seqs):
        n = -(-len(seqs) // bsz) * bsz
        out = np.full((n, seqs.shape[1]), PAD_ID, np.int32)
        out[:len(seqs)] = seqs
        return out

    users = {cid: padded(s) for cid, s in job["clients"].items()}
    plan = [c for row in job["cohorts"] for c in row]
    replay = iter(plan)

    def make_dataset(cid):
        s = users[cid]
        return Dataset(raw_data=(s[:, :-1], s[:, 1:]), user_id=cid)

    keras_model = build_model(m["vocab_size"], m["seq_len"], m["embedding_dim"], m["hidden_dim"],
                              m["projection_dim"], scale_invariant=m["kind"] == "si_cifg", seed=m["seed"])
    n_params = int(keras_model.count_params())
    if len(keras_model.trainable_variables) != len(job["weights"]):
        print(f"pfl_run: error: pfl model has {len(keras_model.trainable_variables)} tensors, fl_sim "
              f"{len(job['weights'])}", file=sys.stderr)
        return 1
    keras_model.set_weights(job["weights"])  # fails loudly on any shape mismatch
    logits = keras_model(job["ref_tokens"], training=False).numpy()
    max_diff = float(np.max(np.abs(logits - job["ref_logits"])))
    keras_model.compile(tf_keras.optimizers.SGD(m["client_lr"]), loss=masked_mean_loss)
    model = TFModel(model=keras_model, metrics={},
                    central_optimizer=tf_keras.optimizers.SGD(m["server_lr"]))

    local_s = [0.0, 0.0]  # wall, CPU seconds in train_one_user so far

    class TimedFedAvg(FederatedAveraging):
        def train_one_user(self, *a, **kw):
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return super().train_one_user(*a, **kw)
            finally:
                local_s[0] += time.perf_counter() - t0
                local_s[1] += time.process_time() - c0

    marks, cpu_marks, local_marks, local_cpu_marks = [], [], [], []

    def mark():
        marks.append(time.perf_counter())
        cpu_marks.append(time.process_time())
        local_marks.append(local_s[0])
        local_cpu_marks.append(local_s[1])

    class Clock(TrainingProcessCallback):
        def on_train_begin(self, *, model):
            mark()
            return Metrics()

        def after_central_iteration(self, aggregate_metrics, model, *, central_iteration):
            mark()
            return False, Metrics()

    train = FederatedDataset(make_dataset_fn=make_dataset, user_sampler=lambda: next(replay))
    backend = SimulatedBackend(training_data=train, val_data=None, postprocessors=[])
    rounds = m["rounds"]
    # evaluation_frequency > rounds: pfl evaluates each user only when iteration % freq == 0,
    # i.e. in round 1 only (before and after its local training), which is the warm-up round.
    params = NNAlgorithmParams(central_num_iterations=rounds, evaluation_frequency=rounds + 1,
                               train_cohort_size=m["cohort"], val_cohort_size=0)
    t_setup = time.perf_counter()
    TimedFedAvg().run(algorithm_params=params, backend=backend, model=model,
                      model_train_params=NNTrainHyperParams(local_learning_rate=m["client_lr"],
                                                            local_num_epochs=epochs,
                                                            local_batch_size=bsz),
                      model_eval_params=NNEvalHyperParams(local_batch_size=bsz),
                      callbacks=[Clock()])
    t_end = time.perf_counter()
    if len(marks) != rounds + 1:
        print(f"pfl_run: error: expected {rounds + 1} round marks, got {len(marks)}", file=sys.stderr)
        return 1
    used = len(plan) - sum(1 for _ in replay)
    diffs = lambda xs: [round(b - a, 4) for a, b in zip(xs, xs[1:])]  # noqa: E731
    final = [w.numpy() for w in keras_model.trainable_variables]
    emit({"round_times_s": diffs(marks), "round_cpu_s": diffs(cpu_marks),
          "local_train_s": diffs(local_marks), "local_train_cpu_s": diffs(local_cpu_marks),
          "users_sampled": used,
          "steps_per_round": [sum(steps_of[c] for c in row) for row in job["cohorts"]],
          "startup_s": round(t_setup - T_START, 2), "total_s": round(t_end - T_START, 2),
          "parameters": n_params,
          "parameters_formula": param_count(m["vocab_size"], m["embedding_dim"], m["hidden_dim"],
                                            m["projection_dim"]),
          "ref_logits_max_abs_diff": max_diff,
          "weights_moved": bool(any(np.any(a != b) for a, b in zip(final, job["weights"]))),
          "tf_threads": args.threads or "default",
          "versions": {p: metadata.version(p) for p in ("pfl", "tensorflow", "tf_keras", "numpy")},
          "pid_cpu_s": round(time.process_time(), 2),
          "env_tf_use_legacy_keras": os.environ.get("TF_USE_LEGACY_KERAS")})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
