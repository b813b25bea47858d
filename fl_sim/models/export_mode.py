"""Export modes of the fl_sim layers: what changes when a graph is traced for TFLite.

Every fl_sim layer with a non-linearity (``CIFGCell`` / ``CIFG``, ``CausalSelfAttention``,
``TransformerBlock``) takes ``export_mode``, one of :data:`EXPORT_MODES`:

``None`` (default: Keras training, evaluation, checkpoints)
    The model as documented in ``cifg.py`` and ``transformer.py``.

``"inference"`` (``fl_sim.export.signatures.InferenceModule``: the .tflite inference files)
    - the scale-invariant activations guard their denominators with :data:`EXPORT_TINY`
      instead of ``scale_invariant.TINY``: 1e-12 is 0 in float16, so a float16 file computed
      0 / 0 = NaN for an all-zero attention row (the SI-Transformer's first positions). The
      outputs change only where a denominator lies in (1e-12, 2**-14), i.e. every unit of a
      gate or attention row is nearly zero; an exactly all-zero row gives zeros under either
      guard. The float32 parity check against Keras would show any difference.
    - the softmax Transformer's causal mask REPLACES masked scores by -:data:`MASK_SCORE`
      instead of adding -1e9. In a full-integer file that sum is one int8 tensor whose range
      must reach -1e9, so every real score rounds to the same value and attention becomes
      uniform over all positions, future ones included (the int8 Transformer lost 8 accuracy
      points in the export test). With ``s * m - (1 - m) * 30`` the range stays about
      [-30, max s], and a masked position's softmax weight is at most
      T * exp(-30 - max allowed score), ~1e-12 for these models, so float32 files still
      match Keras to ~1e-6 (the export parity test checks it).

``"training"`` (``fl_sim.export.signatures.TrainingModule``: the on-device training file)
    every ReLU is :func:`relu_builtin_grad`: ``max(x, 0)`` with the explicit gradient
    ``dy * (x > 0)``. Same forward values and same gradient as ``tf.nn.relu``, but TF's
    gradient of ``tf.nn.relu`` (ReluGrad) has no TFLite builtin kernel, so a ``train``
    signature traced with it would need the Flex delegate.

A model in an export mode is a copy: ``fl_sim.models.export_copy(model, mode)``.
"""

from __future__ import annotations

import tensorflow as tf

from fl_sim.models import scale_invariant

EXPORT_MODES = (None, "inference", "training")

#: Denominator guard of the scale-invariant activations in inference export: the smallest
#: normal float16 (see the module docstring).
EXPORT_TINY = 2.0 ** -14

#: Masked attention scores in inference export are set to -MASK_SCORE (see above).
MASK_SCORE = 30.0


def check_export_mode(mode) -> str | None:
    """``mode`` itself if it is one of :data:`EXPORT_MODES`, else a ValueError naming it."""
    if mode not in EXPORT_MODES:
        raise ValueError(f"export_mode must be one of {EXPORT_MODES}, got {mode!r}")
    return mode


def tiny_for(mode: str | None) -> float:
    """Denominator guard of the scale-invariant activations in ``mode``."""
    return EXPORT_TINY if mode == "inference" else scale_invariant.TINY


@tf.custom_gradient
def relu_builtin_grad(x):
    """``max(x, 0)`` whose gradient ``dy * (x > 0)`` lowers to TFLite builtin ops."""
    def grad(dy):
        return dy * tf.cast(x > 0, dy.dtype)
    return tf.maximum(x, tf.zeros_like(x)), grad


def relu_for(mode: str | None):
    """The ReLU to use in ``mode`` (``tf.nn.relu`` except in ``"training"``)."""
    return relu_builtin_grad if mode == "training" else tf.nn.relu
