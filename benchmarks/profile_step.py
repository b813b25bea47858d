"""Where one local SGD step of the benchmark CIFG goes: the output layer vs the rest.

Issue 12 asks XLA for >= 1.3x on the local pass. Fusion can only speed up what is not
already a large matrix product running at the kernel library's speed. This profile times,
in one process with a simulation worker's TF settings (one thread, op determinism on):

- the whole step (forward, backward, SGD update) of the demo's CIFG, graph and XLA;
- the output layer alone: logits = h W + b over the 5,004-word vocabulary, the masked
  cross-entropy, and the gradients for W, b and h (the same shapes as in the step).

The output layer's share bounds what XLA can gain: if it takes a fraction f of the step
and XLA leaves it as fast as the graph does, the speed-up is at most 1 / f.

    .venv/bin/python -m benchmarks.profile_step   (also part of make bench)
"""

from __future__ import annotations

import time

from benchmarks.common import show, write_result

REPEATS = 60


def _time(fn, *args) -> float:
    """Median CPU milliseconds of fn(*args) (one thread: CPU time is the step's own)."""
    fn(*args)  # trace / compile
    samples = []
    for _ in range(REPEATS):
        c0 = time.process_time()
        out = fn(*args)
        out.numpy()
        samples.append(time.process_time() - c0)
    samples.sort()
    return 1e3 * samples[len(samples) // 2]


def main() -> None:
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.experimental.enable_op_determinism()

    from fl_sim.config import load_experiment
    from fl_sim.models.lm import build_model
    from fl_sim.evaluation import masked_mean_loss

    cfg = load_experiment("experiments/demo.toml", ['model.kind="cifg"', "experiment.compare=[]"])
    vocab, seq, batch = cfg.data.vocab_size + 4, cfg.data.seq_len, cfg.client.batch_size
    model = build_model(cfg.model, vocab, seq, seed=0)
    variables = model.trainable_variables
    rng = np.random.default_rng(0)
    tokens = tf.constant(rng.integers(4, vocab, size=(batch, seq + 1)), tf.int32)

    def step(b):
        with tf.GradientTape() as tape:
            loss = masked_mean_loss(model(b[:, :-1], training=True), b[:, 1:])
        grads = tape.gradient(loss, variables)
        for v, g in zip(variables, grads):
            v.assign_sub(0.0 * tf.convert_to_tensor(g))  # the update's cost, not its effect
        return loss

    dense = model.get_layer("logits")
    w, bias = dense.kernel, dense.bias
    h = tf.constant(rng.normal(size=(batch, seq, w.shape[0])).astype("float32"))

    def output_layer(b):
        with tf.GradientTape() as tape:
            tape.watch(h)
            loss = masked_mean_loss(tf.matmul(h, w) + bias, b[:, 1:])
        grads = tape.gradient(loss, [w, bias, h])
        return loss + sum(tf.reduce_sum(g) * 0.0 for g in grads)

    rows = {}
    for name, fn in (("step", step), ("output_layer", output_layer)):
        for mode, jit in (("graph", False), ("xla", True)):
            rows[f"{name}_{mode}_cpu_ms"] = round(_time(tf.function(fn, jit_compile=jit), tokens), 2)
    rows["output_share_graph"] = round(rows["output_layer_graph_cpu_ms"] / rows["step_graph_cpu_ms"], 3)
    rows["xla_speedup_step"] = round(rows["step_graph_cpu_ms"] / rows["step_xla_cpu_ms"], 3)
    # Even if XLA made everything but the output layer free, the step costs at least the
    # faster of the two output-layer timings.
    rows["xla_speedup_bound"] = round(rows["step_graph_cpu_ms"] / min(
        rows["output_layer_graph_cpu_ms"], rows["output_layer_xla_cpu_ms"]), 3)
    path = write_result("profile_step", rows)
    show("local step: where the CIFG step goes (CPU ms, one thread)", [
        ("whole step", f"graph {rows['step_graph_cpu_ms']}, XLA {rows['step_xla_cpu_ms']} "
                       f"({rows['xla_speedup_step']}x)"),
        ("output layer alone", f"graph {rows['output_layer_graph_cpu_ms']}, XLA "
                               f"{rows['output_layer_xla_cpu_ms']}; share of the graph step "
                               f"{rows['output_share_graph']}"),
        ("XLA speed-up bound", f"{rows['xla_speedup_bound']}x (the rest of the step made free)"),
        ("written", path)])


if __name__ == "__main__":
    main()
