"""Next-word metrics with the Stack Overflow benchmark conventions.

Loss and accuracy count every position whose target is not PAD. ``accuracy_no_oov_eos``
also drops positions whose target is OOV or EOS (TFF's Stack Overflow convention), so a
model cannot score by predicting the unknown-word token. Perplexity is exp of the mean
cross-entropy over non-PAD targets.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from fl_sim.data import EOS_ID, OOV_ID, PAD_ID

STAT_KEYS = ("loss_sum", "tokens", "correct", "tokens_strict", "correct_strict")


def token_stats(logits: tf.Tensor, targets: tf.Tensor) -> dict[str, tf.Tensor]:
    """Sums over a batch: logits [B, T, V], targets [B, T] int32."""
    targets = tf.cast(targets, tf.int32)
    mask = tf.cast(tf.not_equal(targets, PAD_ID), tf.float32)
    strict = mask * tf.cast(tf.not_equal(targets, OOV_ID), tf.float32) \
        * tf.cast(tf.not_equal(targets, EOS_ID), tf.float32)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)
    hit = tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), targets), tf.float32)
    return {
        "loss_sum": tf.reduce_sum(ce * mask),
        "tokens": tf.reduce_sum(mask),
        "correct": tf.reduce_sum(hit * mask),
        "tokens_strict": tf.reduce_sum(strict),
        "correct_strict": tf.reduce_sum(hit * strict),
    }


def masked_mean_loss(logits: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    """Mean cross-entropy over non-PAD targets (0 for an all-PAD batch)."""
    s = token_stats(logits, targets)
    return s["loss_sum"] / tf.maximum(s["tokens"], 1.0)


def summarize(stats: dict[str, float]) -> dict[str, float]:
    """Turn summed counts into loss / accuracy / perplexity."""
    tokens = max(stats["tokens"], 1.0)
    loss = stats["loss_sum"] / tokens
    return {
        "loss": float(loss),
        "accuracy": float(stats["correct"] / tokens),
        "accuracy_no_oov_eos": float(stats["correct_strict"] / max(stats["tokens_strict"], 1.0)),
        "perplexity": float(math.exp(min(loss, 700.0))),
        "tokens": int(stats["tokens"]),
    }


def pad_to_batches(seqs: np.ndarray, batch_size: int) -> np.ndarray:
    """[n, L] -> [ceil(n/B), B, L], padding with all-PAD rows (masked out of every metric)."""
    n, length = seqs.shape
    nb = max(1, -(-n // batch_size))
    out = np.full((nb * batch_size, length), PAD_ID, dtype=np.int32)
    out[:n] = seqs
    return out.reshape(nb, batch_size, length)


class Evaluator:
    """Evaluates a Keras LM on token sequences with one compiled step (no retracing).

    Every batch is padded to ``batch_size`` rows, so with ``jit_compile`` XLA compiles the
    step once (the shape never changes).
    """

    def __init__(self, model, batch_size: int = 64, jit_compile: bool = False):
        self.model = model
        self.batch_size = batch_size

        @tf.function(reduce_retracing=True, jit_compile=jit_compile)
        def _step(batch):
            logits = model(batch[:, :-1], training=False)
            return token_stats(logits, batch[:, 1:])

        self._step = _step

    def evaluate(self, seqs: np.ndarray) -> dict[str, float]:
        totals = {k: 0.0 for k in STAT_KEYS}
        if len(seqs) == 0:
            return summarize(totals)
        for batch in pad_to_batches(np.asarray(seqs, dtype=np.int32), self.batch_size):
            for k, v in self._step(tf.constant(batch)).items():
                totals[k] += float(v)
        return summarize(totals)
