"""Scale-invariant activations for SI-CIFG and the SI-Transformer.

References
----------
- J. H. Ro, S. Bhojanapalli, Z. Xu, Y. Zhang, A. T. Suresh (2024), "Efficient Language
  Model Architectures for Differentially Private Federated Learning", arXiv:2403.08100
  (SI-CIFG: the sigmoid and tanh inside a CIFG cell replaced by scale-invariant
  activations).
- Z. Li, S. Bhojanapalli, M. Zaheer, S. J. Reddi, S. Kumar (2022), "Robust Training of
  Neural Networks using Scale Invariant Architectures", ICML, arXiv:2202.00980 (SIBERT;
  the SI-Transformer in ``transformer.py``).

Provenance of the equations (read this before citing them)
----------------------------------------------------------
The full text of arXiv:2403.08100 could NOT be retrieved with the search tools available
when this module was written: only the abstract (arxiv, paperswithcode, Google Research)
and secondary summaries were found. One secondary summary (emergentmind, "Coupled
Input-Forget Gate (CIFG) in Recurrent Networks", and a themoonlight.io review) states that
the SI-CIFG replaces sigmoid and tanh by "ReLU and max-normalization" activations; neither
gave the formulas. The definitions below are therefore OUR reading of that description,
not equations copied from the paper:

    sigma_SI(z)_k = ReLU(z_k) / max_j ReLU(z_j)        in [0, 1]     (replaces sigmoid)
    tanh_SI(z)_k  = z_k / max_j |z_j|                  in [-1, 1]    (replaces tanh)

with j running over the units of one gate (the last axis), separately for every example.
The SIBERT paper text (arXiv:2202.00980) was not retrievable either (its abstract was);
the attention normalisation, with the causal mask applied before the row sum, is
described with its provenance in ``transformer.py``:

    a_ij = ReLU(s_ij) * m_ij / sum_j' ReLU(s_ij') * m_ij'      (m = causal mask)

Invariance: every function here satisfies f(alpha * z) == f(z) for alpha > 0 (ReLU and
|.| are positively 1-homogeneous, and so are max and sum), whenever the denominator exceeds
``TINY``. The denominator is guarded as ``max(denominator, TINY)``, never by adding an
epsilon, so the invariance is exact (to float rounding) rather than approximate; an all-zero
(or, for sigma_SI and the attention, all-non-positive) input gives an all-zero output, with
no NaN, and finite gradients (large, ~1/TINY, for tanh_SI exactly at z = 0, where the
function is discontinuous; pre-activations are never exactly zero in practice because the
embeddings are random).

All functions are plain TensorFlow (ReLU, ABS, MAX/SUM reductions, MAXIMUM, DIV, MUL), which
map to TFLite builtin ops.
"""

from __future__ import annotations

import tensorflow as tf

#: Guard for the denominators; float32 represents it as a normal number.
TINY = 1e-12


def si_sigmoid(z: tf.Tensor, axis: int = -1, tiny: float = TINY, relu=tf.nn.relu) -> tf.Tensor:
    """Scale-invariant sigmoid: ReLU(z) / max(ReLU(z)) over ``axis``.

    Parameters
    ----------
    z : tf.Tensor
        Pre-activations, e.g. ``[batch, units]``.
    axis : int
        Axis holding the units of one gate.
    tiny, relu
        Denominator guard and ReLU; the defaults except in an export mode
        (``fl_sim.models.export_mode``).

    Returns
    -------
    tf.Tensor
        Same shape as ``z``, values in ``[0, 1]``; the largest positive unit is exactly 1.
    """
    r = relu(z)
    denom = tf.maximum(tf.reduce_max(r, axis=axis, keepdims=True), tiny)
    return r / denom


def si_tanh(z: tf.Tensor, axis: int = -1, tiny: float = TINY) -> tf.Tensor:
    """Scale-invariant tanh: z / max(|z|) over ``axis``; values in ``[-1, 1]``."""
    denom = tf.maximum(tf.reduce_max(tf.abs(z), axis=axis, keepdims=True), tiny)
    return z / denom


def si_normalize(scores: tf.Tensor, mask: tf.Tensor | None = None, axis: int = -1,
                 tiny: float = TINY, relu=tf.nn.relu) -> tf.Tensor:
    """Scale-invariant replacement of softmax (SIBERT-style attention weights).

    ``ReLU(scores) * mask / max(sum(ReLU(scores) * mask), TINY)`` over ``axis``. Rows
    are non-negative and sum to 1, or are all zero when no allowed score is positive.

    Parameters
    ----------
    scores : tf.Tensor
        Attention scores, e.g. ``[batch, heads, T_q, T_k]``.
    mask : tf.Tensor or None
        1.0 where attending is allowed, 0.0 elsewhere; broadcastable to ``scores``.
        Applied BEFORE the normalisation.
    tiny, relu
        As in :func:`si_sigmoid`.
    """
    r = relu(scores)
    if mask is not None:
        r = r * mask
    denom = tf.maximum(tf.reduce_sum(r, axis=axis, keepdims=True), tiny)
    return r / denom
