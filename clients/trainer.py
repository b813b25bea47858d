"""Local training of one client: SGD, Adam or Adagrad on its own sequences, from the global model.

One ``LocalTrainer`` lives per worker process and is reused for every client that process
trains (pfl-research's "one model per worker"): weights are assigned, never rebuilt, and
the whole local pass runs in one ``tf.function`` traced once per process.

With ``client.xla`` the per-batch step (forward, backward, optimizer update) is compiled
by XLA (``tf.function(jit_compile=True)``). Its input has one static shape, [batch_size,
seq_len + 1], so XLA compiles it once per process; the loop over a client's 4-32 batches is
a graph loop around that one executable, so a new number of local steps never recompiles.
Nothing is padded to a fixed step count: a masked extra step would still advance an
adaptive optimizer's moments and step counter. The compile happens at construction, on an
all-PAD batch (zero loss, zero gradients, see ``_warm_up``); its time is in ``compile_s``.

Adam and Adagrad (``client.optimizer``, Keras's implementations) keep per-parameter state
during one client's local pass. It is put back to its initial values before every client,
so nothing carries over between clients or rounds (as in Reddi et al. 2021, "Adaptive
Federated Optimization", whose client optimizers start each round fresh).
"""

from __future__ import annotations

import time

import keras
import numpy as np
import tensorflow as tf

from fl_sim.config import ClientConfig, ExperimentConfig
from fl_sim.data import PAD_ID
from fl_sim.evaluation import Evaluator, masked_mean_loss, pad_to_batches
from fl_sim.models import build_model
from fl_sim.seeding import rng


def make_optimizer(client: ClientConfig) -> keras.optimizers.Optimizer | None:
    """The Keras optimizer of an adaptive client, with Keras's defaults; None for SGD.

    Adam: beta_1 0.9, beta_2 0.999, epsilon 1e-7 added to sqrt(v) (outside the bias
    correction). Adagrad: accumulator starts at 0.1, epsilon 1e-7 inside the square root.
    """
    if client.optimizer == "sgd":
        return None  # written out in the step: no state, and the same math as before
    if client.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=client.lr)
    if client.optimizer == "adagrad":
        return keras.optimizers.Adagrad(learning_rate=client.lr)
    raise ValueError(f"client.optimizer = {client.optimizer!r}: expected sgd, adam or adagrad")


class LocalTrainer:
    def __init__(self, cfg: ExperimentConfig, vocab_size: int, seq_len: int):
        self.cfg = cfg
        self.model = build_model(cfg.model, vocab_size, seq_len, seed=cfg.experiment.seed)
        self.variables = self.model.trainable_variables
        self.lr = tf.Variable(cfg.client.lr, trainable=False, dtype=tf.float32)
        self.evaluator = Evaluator(self.model, jit_compile=cfg.client.xla)
        self.optimizer = make_optimizer(cfg.client)
        self._state_init: list[np.ndarray] = []
        if self.optimizer is not None:
            self.optimizer.build(self.variables)
            self._state_init = [v.numpy() for v in self.optimizer.variables]
        # Per-parameter state one client's pass holds (Adam: 2 x the parameters in float32,
        # Adagrad: 1 x, SGD: 0); scalars (step counter, learning rate) not counted.
        self.optimizer_state_bytes = int(sum(a.nbytes for a in self._state_init if a.ndim))
        model, variables, lr, optimizer = self.model, self.variables, self.lr, self.optimizer
        batch_shape = [cfg.client.batch_size, seq_len + 1]

        def step(batch):
            with tf.GradientTape() as tape:
                loss = masked_mean_loss(model(batch[:, :-1], training=True), batch[:, 1:])
            grads = tape.gradient(loss, variables)
            if optimizer is None:
                for v, g in zip(variables, grads):
                    v.assign_sub(lr * g)
            else:
                # Dense gradients (the embedding's arrives as IndexedSlices): Adam and
                # Adagrad then update every row each step, as their formulas say, not
                # only the rows of this batch's tokens.
                optimizer.apply([tf.convert_to_tensor(g) for g in grads], variables)
            return loss

        if cfg.client.xla:
            step = tf.function(step, jit_compile=True,
                               input_signature=[tf.TensorSpec(batch_shape, tf.int32)])

        # The loop over batches stays inside the graph (no Python per step).
        @tf.function(input_signature=[tf.TensorSpec([None, *batch_shape], tf.int32)])
        def _local_pass(batches):
            total = tf.constant(0.0)
            for i in tf.range(tf.shape(batches)[0]):
                total += step(batches[i])
            return total

        self._local_pass = _local_pass
        self.compile_s = self._warm_up(batch_shape)

    def _warm_up(self, batch_shape: list[int]) -> float:
        """Trace (and with XLA compile) the local pass now; return the seconds it took.

        The batch is all PAD, so every target is masked: the loss and every gradient are
        exactly 0, an SGD step leaves the weights as they are, and what an Adam or Adagrad
        step changed in the state is undone by ``_reset_optimizer`` (zero gradients move
        no weight there either: m and g are 0, so the update is 0 / (sqrt(v) + eps)).
        """
        t0 = time.perf_counter()
        self._local_pass(tf.fill([1, *batch_shape], PAD_ID))
        self.variables[0].numpy()
        self._reset_optimizer()
        return time.perf_counter() - t0

    def _reset_optimizer(self) -> None:
        """Fresh optimizer state (moments, accumulators, step counter) for the next client."""
        if self.optimizer is not None:
            for v, init in zip(self.optimizer.variables, self._state_init):
                v.assign(init)


    def get_weights(self) -> list[np.ndarray]:
        return [v.numpy() for v in self.variables]

    def set_weights(self, weights: list[np.ndarray]) -> None:
        if len(weights) != len(self.variables):
            raise ValueError(f"expected {len(self.variables)} tensors, got {len(weights)}")
        for v, w in zip(self.variables, weights):
            v.assign(w)

    def batches_for(self, seqs: np.ndarray, server_round: int, client_id: str) -> np.ndarray:
        """The client's batches for this round: reshuffled each epoch, capped at max_steps."""
        c = self.cfg.client
        parts = []
        for epoch in range(c.local_epochs):
            order = rng(self.cfg.experiment.seed, "client-order", server_round, client_id,
                        epoch).permutation(len(seqs))
            parts.append(pad_to_batches(np.asarray(seqs)[order], c.batch_size))
        batches = np.concatenate(parts)
        if c.max_steps:
            batches = batches[: c.max_steps]
        return batches

    def train(self, global_weights: list[np.ndarray], seqs: np.ndarray, server_round: int,
              client_id: str) -> tuple[list[np.ndarray], dict[str, float]]:
        """Train from ``global_weights`` with fresh optimizer state; return
        (delta = local - global, metrics)."""
        self.set_weights(global_weights)
        self._reset_optimizer()
        if len(seqs) == 0:
            raise ValueError(f"client {client_id!r} has no training sequences")
        batches = self.batches_for(seqs, server_round, client_id)
        total = float(self._local_pass(tf.constant(batches)))
        local = self.get_weights()
        delta = [lw - gw for lw, gw in zip(local, global_weights)]
        used = min(len(seqs), len(batches) * self.cfg.client.batch_size)
        return delta, {"num_examples": used, "train_loss": total / len(batches),
                       "steps": len(batches), "optimizer_state_bytes": self.optimizer_state_bytes}
