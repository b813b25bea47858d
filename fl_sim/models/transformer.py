"""Small causal decoder-only Transformer LM body, and its scale-invariant (SIBERT-style) variant.

Pre-LN blocks (as in GPT-2 / nanoGPT), for a residual stream x of shape [B, T, D]:

    x = x + F_attn(x),   F_attn(x) = Attn(LN_1(x))
    x = x + F_ff(x),     F_ff(x)   = FFN(LN_2(x))

Attention with H heads of size Dh = D/H, q = y W_Q, k = y W_K, v = y W_V (y = LN_1(x)),
scores s = q k^T / sqrt(Dh) per head, causal mask m (m_ij = 1 for j <= i, else 0):

    Transformer:     A = softmax(s + (1 - m) * -1e9)
                     Attn(y) = concat_h(A v + ...) W_O + b_O,  q, k, v with biases
                     FFN(y)  = ReLU(y W_1 + b_1) W_2 + b_2,     LN with gain and bias
    SI-Transformer:  A = ReLU(s) * m / max(sum_j ReLU(s) * m, TINY)
                     Attn(y) = concat_h(A v) W_O               no biases
                     FFN(y)  = ReLU(y W_1) W_2                 no biases
                     LN(x)   = (x - mean(x)) / sqrt(var(x) + eps)   no gain, no bias

Weight groups (per block, SI-Transformer; D = width):
    W_Q = attn.qkv_kernel[:, :D],  W_K = attn.qkv_kernel[:, D:2D],
    W_V = attn.qkv_kernel[:, 2D:], W_O = attn.out_kernel,
    W_1 = ff_1.kernel,             W_2 = ff_2.kernel.
The SI model's LayerNorms (ln_1, ln_2 and the final one) have no weights at all.

Relations that hold for the SI-Transformer (and are tested in tests/unit/test_models.py,
for any a, b, c, d > 0):

    (R1) A(x; a W_Q, b W_K) = A(x; W_Q, W_K)                       attention weights
    (R2) F_attn(x; a W_Q, b W_K, c W_V, d W_O) = c d F_attn(x; W)
    (R3) F_ff(x; a W_1, b W_2) = a b F_ff(x; W)
so scaling all of one block's matrices by c gives F(x; cW) = c^2 F(x; W) for both branches
(positively homogeneous of degree k = 2), and F(x; W) is a function of x only through
LN(x). The 1/sqrt(Dh) factor cancels in the row normalisation; it is kept so that the
scores have the same size as the softmax model's.

Why: ReLU and the row sum are positively 1-homogeneous, so ReLU(a b s) / sum(ReLU(a b s))
= ReLU(s) / sum(ReLU(s)); A v is then linear in W_V, and the output linear in W_O; ReLU(a z)
= a ReLU(z). Biases break this: ReLU(a z + b) != a ReLU(z + b), and an output bias (b_O,
b_2) does not scale at all. LayerNorm's gain and bias would be further weights of every
branch (y = LN(x) g + beta feeds W_Q, W_K, W_V, W_1); following SIBERT as described they are
dropped, so each branch depends on the weight matrices above and nothing else. The final
LN's gain and bias would be redundant anyway: the logits layer that follows has its own
kernel and bias (it is not scale invariant: its scale sets the softmax temperature).

LayerNorm's eps: LN_eps(lambda x) = LN_{eps / lambda^2}(x) exactly, so LN is invariant to
the scale of its input only up to eps: per token, LN_eps(lambda x) = r LN_eps(x) with
r = sqrt((var + eps) / (var + eps / lambda^2)), |r - 1| <= eps / (2 var) * |1 - 1/lambda^2|.
Relations R1-R3 scale weights, not LN's input, so eps does not enter them. It does enter
the whole-body relation: scaling the token and position tables by lambda^2 and every block
matrix by lambda scales the residual stream by lambda^2, and

    (R4) Body(lambda^2 E, lambda^2 P, lambda W; eps) = Body(E, P, W; eps / lambda^4)

exactly (Body = final LN of the residual stream). Without the eps change the body is scale
invariant only up to the per-token error above, at every LayerNorm, which is small only
where a token's variance at that LN is large against eps. Measured on the R4 test's model
at initialisation (width 8, 2 layers, tables of stddev 0.02: input variance 4e-4 to 8e-4),
eps = 1e-5 against eps = 1e-12: most tokens' body outputs moved by about 0.01 (outputs of
size ~1), one token whose residual stream stayed small by 0.39. The tests check R4 exactly
and, for the feed-forward branch, that the input-scale change is exactly the ratio r.

All-zero attention rows: row i normalises over its causal positions j <= i only; when
none of them has a positive score (always possible for i = 0, which has a single key), the
row of A is all zero (the denominator is guarded as max(sum, TINY), not sum + eps) and the
attention branch adds nothing at that position. Because the guard is a max, R1/R2 stay
exact (to float rounding) for every row whose sum is 0 or at least TINY / min(1, a b)
(TINY = 1e-12, 2**-14 in exported inference graphs); only rows whose positive sum lies
below that bound deviate (the R1 test asserts that its rows are clear of it).

Provenance (what was checked, 2026-12-01, with the stored-document search): the abstract of
Li, Bhojanapalli, Zaheer, Reddi, Kumar, "Robust Training of Neural Networks using Scale
Invariant Architectures", ICML 2022 (PMLR 162:12656-12684, arXiv:2202.00980) was found: a
recipe of (1) a scale-invariant architecture, "i.e. the scale of parameter doesn't affect
the output of the network", (2) SGD with weight decay, (3) optionally clipping the global
gradient norm proportional to the weight norm, and SIBERT, a scale-invariant BERT trained
by plain SGD. The full text was NOT retrievable, so the equations above could not be
checked against the paper; they follow the description in issue 14 (ReLU attention with
row-sum normalisation, pre-LN blocks with LayerNorm without affine parameters, ReLU
feed-forward without biases). Also not verified: how SIBERT treats the embeddings and the
output layer, its eps and zero-row handling, and the 1/sqrt(Dh) factor. The causal
(decoder) adaptation, masking before the row sum, is ours: SIBERT is a bidirectional
encoder. Ro et al. 2024 (arXiv:2403.08100; abstract only) report that the scale-invariant
modification helps federated training of transformers; which variant they used is not
known here.

Attention is written with plain matmuls, reshapes to 4-D and a constant mask (no
``keras.layers.MultiHeadAttention``), so a fixed-shape graph converts to TFLite builtins.
``export_mode`` (``fl_sim.models.export_mode``) changes how a layer is traced for TFLite.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from fl_sim.models.cifg import derive_seed
from fl_sim.models.export_mode import MASK_SCORE, check_export_mode, relu_for, tiny_for
from fl_sim.models.scale_invariant import si_normalize

#: LayerNorm epsilon of both variants.
NORM_EPSILON = 1e-5


def layer_norm(scale_invariant: bool, epsilon: float = NORM_EPSILON, name: str | None = None):
    """LayerNorm with gain and bias, or (SI) without any weights."""
    return keras.layers.LayerNormalization(epsilon=epsilon, center=not scale_invariant,
                                           scale=not scale_invariant, name=name)


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
    """Multi-head causal self-attention: softmax with biases, or SI (ReLU / row sum, no biases).

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
        self.qkv_kernel = self.add_weight(                           # [W_Q | W_K | W_V]
            name="qkv_kernel", shape=(d, 3 * d),
            initializer=glorot(seed=derive_seed(self.seed, "qkv")))
        self.out_kernel = self.add_weight(                           # W_O
            name="out_kernel", shape=(d, d), initializer=glorot(seed=derive_seed(self.seed, "out")))
        if self.scale_invariant:
            self.qkv_bias = self.out_bias = None                     # biases break homogeneity
        else:
            self.qkv_bias = self.add_weight(name="qkv_bias", shape=(3 * d,), initializer="zeros")
            self.out_bias = self.add_weight(name="out_bias", shape=(d,), initializer="zeros")

    def _heads(self, x, steps):
        # [B, T, D] -> [B, H, T, D/H]
        x = tf.reshape(x, [-1, steps, self.num_heads, self.dim // self.num_heads])
        return tf.transpose(x, [0, 2, 1, 3])

    def _qkv(self, x):
        steps = x.shape[1]
        if steps is None:
            raise ValueError("CausalSelfAttention needs a static sequence length")
        qkv = keras.ops.matmul(x, self.qkv_kernel)                   # [B, T, 3D]
        if self.qkv_bias is not None:
            qkv = qkv + self.qkv_bias
        q, k, v = tf.split(qkv, 3, axis=-1)                          # 3 x [B, T, D]
        return tuple(self._heads(t, steps) for t in (q, k, v))       # 3 x [B, H, T, Dh]

    def _weights(self, q, k):
        steps = q.shape[2]
        scores = tf.matmul(q, k, transpose_b=True)                   # [B, H, T, T]
        scores = scores * (1.0 / math.sqrt(self.dim // self.num_heads))
        mask = tf.constant(np.tril(np.ones((steps, steps), np.float32)))  # [T, T]
        if self.scale_invariant:
            return si_normalize(scores, mask, tiny=tiny_for(self.export_mode),
                                relu=relu_for(self.export_mode))
        if self.export_mode == "inference":
            return tf.nn.softmax(scores * mask - (1.0 - mask) * MASK_SCORE, axis=-1)
        return tf.nn.softmax(scores + (1.0 - mask) * -1e9, axis=-1)

    def attention_weights(self, x):
        """A: [B, T, D] -> [B, H, T, T] (row i over keys j; zero for j > i)."""
        q, k, _ = self._qkv(x)
        return self._weights(q, k)

    def call(self, x):
        steps = x.shape[1]
        q, k, v = self._qkv(x)
        out = tf.matmul(self._weights(q, k), v)                      # [B, H, T, Dh]
        out = tf.reshape(tf.transpose(out, [0, 2, 1, 3]), [-1, steps, self.dim])  # [B, T, D]
        out = keras.ops.matmul(out, self.out_kernel)
        return out if self.out_bias is None else out + self.out_bias

    def get_config(self):
        config = super().get_config()
        config.update(num_heads=self.num_heads, scale_invariant=self.scale_invariant,
                      seed=self.seed, export_mode=self.export_mode)
        return config


@keras.saving.register_keras_serializable(package="fl_sim")
class TransformerBlock(keras.layers.Layer):
    """Pre-LN block: x + F_attn(x), then x + F_ff(x). [B, T, D] -> [B, T, D].

    ``scale_invariant``: LayerNorms without gain/bias, SI attention, feed-forward without
    biases (see the module docstring for the relations this gives). ``norm_epsilon`` is
    the LayerNorms' eps.
    """

    def __init__(self, dim: int, num_heads: int, ff_dim: int, scale_invariant: bool = False,
                 seed: int = 0, export_mode: str | None = None,
                 norm_epsilon: float = NORM_EPSILON, **kwargs):
        super().__init__(**kwargs)
        self.dim = int(dim)
        self.num_heads = int(num_heads)
        self.ff_dim = int(ff_dim)
        self.scale_invariant = bool(scale_invariant)
        self.seed = int(seed)
        self.export_mode = check_export_mode(export_mode)
        self.norm_epsilon = float(norm_epsilon)
        self._relu = relu_for(self.export_mode)
        si = self.scale_invariant
        glorot = keras.initializers.GlorotUniform
        self.ln_1 = layer_norm(si, self.norm_epsilon, name="ln_1")
        self.attn = CausalSelfAttention(num_heads, scale_invariant=si,
                                        seed=derive_seed(seed, "attn"), export_mode=export_mode,
                                        name="attn")
        self.ln_2 = layer_norm(si, self.norm_epsilon, name="ln_2")
        # the ReLU is applied in call(), so that an export mode can choose its gradient
        self.ff_1 = keras.layers.Dense(ff_dim, use_bias=not si, name="ff_1",
                                       kernel_initializer=glorot(seed=derive_seed(seed, "ff_1")))
        self.ff_2 = keras.layers.Dense(dim, use_bias=not si, name="ff_2",
                                       kernel_initializer=glorot(seed=derive_seed(seed, "ff_2")))

    def build(self, input_shape):
        self.ln_1.build(input_shape)
        self.attn.build(input_shape)
        self.ln_2.build(input_shape)
        self.ff_1.build(input_shape)
        self.ff_2.build((*input_shape[:-1], self.ff_dim))

    def attention_branch(self, x):
        """F_attn(x) = Attn(LN_1(x)): [B, T, D] -> [B, T, D]."""
        return self.attn(self.ln_1(x))

    def ff_branch(self, x):
        """F_ff(x) = W_2 ReLU(W_1 LN_2(x)) (+ biases unless SI): [B, T, D] -> [B, T, D]."""
        return self.ff_2(self._relu(self.ff_1(self.ln_2(x))))

    def call(self, x):
        x = x + self.attention_branch(x)                             # [B, T, D]
        return x + self.ff_branch(x)                                 # [B, T, D]

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim, num_heads=self.num_heads, ff_dim=self.ff_dim,
                      scale_invariant=self.scale_invariant, seed=self.seed,
                      export_mode=self.export_mode, norm_epsilon=self.norm_epsilon)
        return config
