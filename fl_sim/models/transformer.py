"""Small causal decoder-only Transformer LM body, and its scale-invariant variant.

Pre-LN blocks (as in GPT-2 / nanoGPT), for an input x of shape [B, T, D]:

    x = x + Attn(LN_1(x))
    x = x + W_2 ReLU(W_1 LN_2(x) + b_1) + b_2

Attention with H heads of size D/H, scores s = q k^T / sqrt(D/H) and causal mask m
(m_ij = 1 for j <= i, else 0):

    Transformer:     A = softmax(s + (1 - m) * -1e9)
    SI-Transformer:  A = ReLU(s) * m / max(sum_j ReLU(s) * m, TINY)      (SIBERT-style)

The SI attention weights are invariant to scaling the query or key projections (weights and
bias) by any alpha > 0, following Li et al. 2022 (SIBERT, arXiv:2202.00980) as used for the
SI-Transformer of Ro et al. 2024 (arXiv:2403.08100); see ``scale_invariant.py`` for the
provenance of that formula (secondary description, not the paper text). Only the attention
normalisation changes; embeddings, LayerNorms and the feed-forward blocks are the same in
both variants.

Attention is written with plain matmuls, reshapes to 4-D and a constant mask (no
``keras.layers.MultiHeadAttention``), so a fixed-shape graph converts to TFLite builtins.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from fl_sim.models.cifg import derive_seed
from fl_sim.models.export_mode import MASK_SCORE, check_export_mode, relu_for, tiny_for
from fl_sim.models.scale_invariant import si_normalize


@keras.saving.register_keras_serializable(package="fl_sim")
class PositionEmbedding(keras.layers.Layer):
    """Adds a learned position embedding: [B, T, D] -> [B, T, D] (T <= max_len).

    A full-length input gets the whole table added, not a slice of it: same values, and
    the gradient of a strided slice (StridedSliceGrad) has no TFLite builtin kernel, which
    matters for the on-device training export.
    """

    def __init__(self, max_len: int, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.max_len = int(max_len)
        self.seed = int(seed)

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            name="embeddings", shape=(self.max_len, int(input_shape[-1])),
            initializer=keras.initializers.RandomNormal(stddev=0.02, seed=self.seed))

    def call(self, x):
        steps = x.shape[1]
        if steps == self.max_len:
            return x + self.embeddings                          # [B, T, D] + [T, D]
        return x + self.embeddings[:steps]

    def get_config(self):
        config = super().get_config()
        config.update(max_len=self.max_len, seed=self.seed)
        return config


@keras.saving.register_keras_serializable(package="fl_sim")
class CausalSelfAttention(keras.layers.Layer):
    """Multi-head causal self-attention, softmax or scale-invariant (ReLU / sum).

    ``export_mode`` (``fl_sim.models.export_mode``): in ``"inference"`` the softmax mask
    replaces masked scores by -MASK_SCORE (int8-friendly) and the SI guard is EXPORT_TINY;
    in ``"training"`` the SI ReLU has a builtin-op gradient.
    """

    def __init__(self, num_heads: int, scale_invariant: bool = False, seed: int = 0,
                 export_mode: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.scale_invariant = bool(scale_invariant)
        self.seed = int(seed)
        self.export_mode = check_export_mode(export_mode)

    def build(self, input_shape):
        d = int(input_shape[-1])
        if d % self.num_heads:
            raise ValueError(f"width {d} is not divisible by num_heads {self.num_heads}")
        self.dim = d
        glorot = keras.initializers.GlorotUniform
        self.qkv_kernel = self.add_weight(
            name="qkv_kernel", shape=(d, 3 * d),
            initializer=glorot(seed=derive_seed(self.seed, "qkv")))
        self.qkv_bias = self.add_weight(name="qkv_bias", shape=(3 * d,), initializer="zeros")
        self.out_kernel = self.add_weight(
            name="out_kernel", shape=(d, d), initializer=glorot(seed=derive_seed(self.seed, "out")))
        self.out_bias = self.add_weight(name="out_bias", shape=(d,), initializer="zeros")

    def _heads(self, x, steps):
        # [B, T, D] -> [B, H, T, D/H]
        x = tf.reshape(x, [-1, steps, self.num_heads, self.dim // self.num_heads])
        return tf.transpose(x, [0, 2, 1, 3])

    def call(self, x):
        steps = x.shape[1]
        if steps is None:
            raise ValueError("CausalSelfAttention needs a static sequence length")
        qkv = keras.ops.matmul(x, self.qkv_kernel) + self.qkv_bias   # [B, T, 3D]
        q, k, v = tf.split(qkv, 3, axis=-1)                          # 3 x [B, T, D]
        q, k, v = (self._heads(t, steps) for t in (q, k, v))         # 3 x [B, H, T, Dh]
        scores = tf.matmul(q, k, transpose_b=True)                   # [B, H, T, T]
        scores = scores * (1.0 / math.sqrt(self.dim // self.num_heads))
        mask = tf.constant(np.tril(np.ones((steps, steps), np.float32)))  # [T, T]
        if self.scale_invariant:
            weights = si_normalize(scores, mask, tiny=tiny_for(self.export_mode),
                                   relu=relu_for(self.export_mode))
        elif self.export_mode == "inference":
            weights = tf.nn.softmax(scores * mask - (1.0 - mask) * MASK_SCORE, axis=-1)
        else:
            weights = tf.nn.softmax(scores + (1.0 - mask) * -1e9, axis=-1)
        out = tf.matmul(weights, v)                                  # [B, H, T, Dh]
        out = tf.reshape(tf.transpose(out, [0, 2, 1, 3]), [-1, steps, self.dim])  # [B, T, D]
        return keras.ops.matmul(out, self.out_kernel) + self.out_bias

    def get_config(self):
        config = super().get_config()
        config.update(num_heads=self.num_heads, scale_invariant=self.scale_invariant,
                      seed=self.seed, export_mode=self.export_mode)
        return config


@keras.saving.register_keras_serializable(package="fl_sim")
class TransformerBlock(keras.layers.Layer):
    """Pre-LN block: x + Attn(LN(x)), then x + FFN(LN(x)). [B, T, D] -> [B, T, D]."""

    def __init__(self, dim: int, num_heads: int, ff_dim: int, scale_invariant: bool = False,
                 seed: int = 0, export_mode: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.dim = int(dim)
        self.num_heads = int(num_heads)
        self.ff_dim = int(ff_dim)
        self.scale_invariant = bool(scale_invariant)
        self.seed = int(seed)
        self.export_mode = check_export_mode(export_mode)
        self._relu = relu_for(self.export_mode)
        glorot = keras.initializers.GlorotUniform
        self.ln_1 = keras.layers.LayerNormalization(epsilon=1e-5, name="ln_1")
        self.attn = CausalSelfAttention(num_heads, scale_invariant=scale_invariant,
                                        seed=derive_seed(seed, "attn"), export_mode=export_mode,
                                        name="attn")
        self.ln_2 = keras.layers.LayerNormalization(epsilon=1e-5, name="ln_2")
        # the ReLU is applied in call(), so that an export mode can choose its gradient
        self.ff_1 = keras.layers.Dense(ff_dim, name="ff_1",
                                       kernel_initializer=glorot(seed=derive_seed(seed, "ff_1")))
        self.ff_2 = keras.layers.Dense(dim, name="ff_2",
                                       kernel_initializer=glorot(seed=derive_seed(seed, "ff_2")))

    def build(self, input_shape):
        self.ln_1.build(input_shape)
        self.attn.build(input_shape)
        self.ln_2.build(input_shape)
        self.ff_1.build(input_shape)
        self.ff_2.build((*input_shape[:-1], self.ff_dim))

    def call(self, x):
        x = x + self.attn(self.ln_1(x))                              # [B, T, D]
        return x + self.ff_2(self._relu(self.ff_1(self.ln_2(x))))    # [B, T, D]

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim, num_heads=self.num_heads, ff_dim=self.ff_dim,
                      scale_invariant=self.scale_invariant, seed=self.seed,
                      export_mode=self.export_mode)
        return config
