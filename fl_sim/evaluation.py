"""Next-word metrics: the Stack Overflow benchmark conventions and keyboard word accuracy.

Loss and ``accuracy`` count every position whose target is not PAD. ``accuracy_no_oov_eos``
also drops positions whose target is OOV or EOS (TFF's Stack Overflow convention), so a
model cannot score by predicting the unknown-word token. Perplexity is exp of the mean
cross-entropy over non-PAD targets.

The headline metrics are ``word_top1`` and ``word_top3``: the share of word targets (in
vocabulary, not punctuation-only: :mod:`fl_sim.data.targets`) that are the model's first,
or among its first three, suggestions, where suggestions never name a special token
(a keyboard shows three words and no "<eos>"). Punctuation, EOS and OOV are about a third
of the targets of the plays, and a constant "," or "<eos>" already scores about what a
weak model does on the other metrics; on word targets a model must predict words.

Everything is computed in the evaluation graph as per-sequence sums, so a caller that knows
which client each sequence belongs to gets per-client sums for free, and with them the
standard error clustered by client (:func:`fl_sim.stats.clustered_ratio_se`).
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from fl_sim.data import EOS_ID, OOV_ID, PAD_ID
from fl_sim.data.vocab import NUM_SPECIAL
from fl_sim.stats import clustered_ratio_se

STAT_KEYS = ("loss_sum", "tokens", "correct", "tokens_strict", "correct_strict")
WORD_KEYS = ("word_tokens", "word_hits1", "word_hits3")
TOP_K = 3


def sequence_stats(logits: tf.Tensor, targets: tf.Tensor,
                   word_mask: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
    """Per-sequence sums ``[B]``: logits [B, T, V], targets [B, T] int32.

    ``word_mask`` (bool ``[V]``, True at word ids) adds :data:`WORD_KEYS`: word targets and
    how many of them are the top-1 / among the top-3 non-special candidates.
    """
    targets = tf.cast(targets, tf.int32)
    mask = tf.cast(tf.not_equal(targets, PAD_ID), tf.float32)
    strict = mask * tf.cast(tf.not_equal(targets, OOV_ID), tf.float32) \
        * tf.cast(tf.not_equal(targets, EOS_ID), tf.float32)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)
    hit = tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), targets), tf.float32)
    out = {
        "loss_sum": tf.reduce_sum(ce * mask, axis=-1),
        "tokens": tf.reduce_sum(mask, axis=-1),
        "correct": tf.reduce_sum(hit * mask, axis=-1),
        "tokens_strict": tf.reduce_sum(strict, axis=-1),
        "correct_strict": tf.reduce_sum(hit * strict, axis=-1),
    }
    if word_mask is not None:
        special = tf.range(tf.shape(logits)[-1]) < NUM_SPECIAL
        candidates = tf.where(special, tf.constant(-np.inf, logits.dtype), logits)
        top = tf.math.top_k(candidates, k=TOP_K).indices           # [B, T, K], ties: lower id
        in_top = tf.cast(tf.equal(top, targets[..., None]), tf.float32)
        word = tf.cast(tf.gather(word_mask, targets), tf.float32) * mask
        out["word_tokens"] = tf.reduce_sum(word, axis=-1)
        out["word_hits1"] = tf.reduce_sum(in_top[..., 0] * word, axis=-1)
        out["word_hits3"] = tf.reduce_sum(tf.reduce_sum(in_top, axis=-1) * word, axis=-1)
    return out


def token_stats(logits: tf.Tensor, targets: tf.Tensor,
                word_mask: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
    """Sums over a batch: logits [B, T, V], targets [B, T] int32 (see :func:`sequence_stats`)."""
    return {k: tf.reduce_sum(v) for k, v in sequence_stats(logits, targets, word_mask).items()}


def masked_mean_loss(logits: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    """Mean cross-entropy over non-PAD targets (0 for an all-PAD batch)."""
    targets = tf.cast(targets, tf.int32)
    mask = tf.cast(tf.not_equal(targets, PAD_ID), tf.float32)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)
    return tf.reduce_sum(ce * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


def summarize(stats: dict[str, float], clusters: dict[str, np.ndarray] | None = None) -> dict[str, float]:
    """Turn summed counts into loss / accuracy / perplexity (and word top-k when present).

    ``clusters`` holds the same sums per evaluation client (arrays); with it the word
    accuracies and ``accuracy_no_oov_eos`` get ``*_se``, their standard error clustered
    by client, and ``clients`` counts the clients with word targets.
    """
    tokens = max(stats["tokens"], 1.0)
    loss = stats["loss_sum"] / tokens
    out = {
        "loss": float(loss),
        "accuracy": float(stats["correct"] / tokens),
        "accuracy_no_oov_eos": float(stats["correct_strict"] / max(stats["tokens_strict"], 1.0)),
        "perplexity": float(math.exp(min(loss, 700.0))),
        "tokens": int(stats["tokens"]),
    }
    if "word_tokens" in stats:
        words = max(stats["word_tokens"], 1.0)
        out.update(word_top1=float(stats["word_hits1"] / words),
                   word_top3=float(stats["word_hits3"] / words),
                   word_tokens=int(stats["word_tokens"]))
    if clusters is not None:
        out["accuracy_no_oov_eos_se"] = clustered_ratio_se(clusters["correct_strict"],
                                                           clusters["tokens_strict"])
        if "word_tokens" in clusters:
            out["word_top1_se"] = clustered_ratio_se(clusters["word_hits1"], clusters["word_tokens"])
            out["word_top3_se"] = clustered_ratio_se(clusters["word_hits3"], clusters["word_tokens"])
            out["clients"] = int(np.count_nonzero(clusters["word_tokens"]))
    return out


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

    Parameters
    ----------
    model : keras.Model
    batch_size : int
    word_mask : numpy.ndarray of bool, optional
        ``[vocab_size]``, True at word ids (:func:`fl_sim.data.targets.word_mask`); adds
        the word top-1 / top-3 accuracies.
    jit_compile : bool
    """

    def __init__(self, model, batch_size: int = 64, word_mask: np.ndarray | None = None,
                 jit_compile: bool = False):
        self.model = model
        self.batch_size = batch_size
        mask = None if word_mask is None else tf.constant(np.asarray(word_mask, dtype=bool))

        @tf.function(reduce_retracing=True, jit_compile=jit_compile)
        def _step(batch):
            logits = model(batch[:, :-1], training=False)
            return sequence_stats(logits, batch[:, 1:], mask)

        self._step = _step

    def evaluate(self, seqs: np.ndarray, clients: np.ndarray | None = None) -> dict[str, float]:
        """Metrics over ``seqs``; ``clients[i]`` (an int per row) names row i's client."""
        seqs = np.asarray(seqs, dtype=np.int32)
        if len(seqs) == 0:
            return summarize({k: 0.0 for k in STAT_KEYS})
        parts: dict[str, list[np.ndarray]] = {}
        for batch in pad_to_batches(seqs, self.batch_size):
            for k, v in self._step(tf.constant(batch)).items():
                parts.setdefault(k, []).append(v.numpy())
        rows = {k: np.concatenate(v)[:len(seqs)].astype(np.float64) for k, v in parts.items()}
        totals = {k: float(v.sum()) for k, v in rows.items()}
        per_client = None
        if clients is not None:
            clients = np.asarray(clients)
            if clients.shape != (len(seqs),):
                raise ValueError(f"clients has shape {clients.shape}, expected ({len(seqs)},)")
            per_client = {k: np.bincount(clients, weights=v) for k, v in rows.items()}
        return summarize(totals, per_client)
