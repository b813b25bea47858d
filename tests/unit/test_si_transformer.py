"""SI-Transformer (SIBERT-style): the relations claimed in fl_sim/models/transformer.py,
each tested on random inputs, against a NumPy reference where one is needed.

Tolerances: float32 rounds each operation to a relative 6e-8; the longest chain here is a
LayerNorm, three matmuls of inner size <= 24 and a row sum, well under 200 roundings, so
a relation that is exact in real arithmetic holds to a relative 1e-5. Outputs near zero
(sums of signed terms) get an absolute allowance of 1e-5 times the output's largest entry.
"""

from __future__ import annotations

import dataclasses
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from fl_sim.config import ModelConfig  # noqa: E402
from fl_sim.models import CausalSelfAttention, TransformerBlock, build_model  # noqa: E402
from fl_sim.models.transformer import NORM_EPSILON  # noqa: E402

D, H, FF, T, B = 8, 2, 24, 7, 3
RTOL = 1e-5


def close(got, want):
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL * np.abs(want).max())


def rand(shape, seed, loc=0.0, scale=1.0):
    return (loc + scale * np.random.default_rng(seed).normal(size=shape)).astype(np.float32)


def block(si=True, seed=0):
    layer = TransformerBlock(D, H, FF, scale_invariant=si, seed=seed)
    layer.build((None, T, D))
    return layer


def scale_qkvo(attn, a=1.0, b=1.0, c=1.0, d=1.0):
    """W_Q *= a, W_K *= b, W_V *= c (column blocks of qkv_kernel), W_O *= d."""
    cols = np.concatenate([np.full(D, a), np.full(D, b), np.full(D, c)]).astype(np.float32)
    attn.qkv_kernel.assign(attn.qkv_kernel.numpy() * cols)
    attn.out_kernel.assign(attn.out_kernel.numpy() * np.float32(d))


def np_si_attention_weights(x, qkv_kernel, heads):
    """NumPy float64: A = ReLU(s) m / sum_j ReLU(s) m (0 where the sum is 0), per head."""
    x, w = x.astype(np.float64), qkv_kernel.astype(np.float64)
    q, k = x @ w[:, :D], x @ w[:, D:2 * D]
    dh = D // heads
    q = q.reshape(x.shape[0], T, heads, dh).transpose(0, 2, 1, 3)
    k = k.reshape(x.shape[0], T, heads, dh).transpose(0, 2, 1, 3)
    r = np.maximum(q @ k.transpose(0, 1, 3, 2) / np.sqrt(dh), 0) * np.tril(np.ones((T, T)))
    sums = r.sum(-1, keepdims=True)
    return np.divide(r, sums, out=np.zeros_like(r), where=sums > 0), sums


# ------------------------------------------------------------------ what the SI model has


def test_si_transformer_weights_are_the_named_matrices_only():
    cfg = ModelConfig(kind="si_transformer", hidden_dim=D, num_layers=2, num_heads=H, ff_dim=FF)
    model = build_model(cfg, vocab_size=11, seq_len=T, seed=0)
    paths = sorted(v.path for v in model.weights)
    per_block = ["attn/out_kernel", "attn/qkv_kernel", "ff_1/kernel", "ff_2/kernel"]
    expected = sorted(["embedding/embeddings", "position/embeddings", "logits/kernel",
                       "logits/bias"] + [f"block_{i}/{p}" for i in range(2) for p in per_block])
    assert paths == expected
    softmax = build_model(dataclasses.replace(cfg, kind="transformer"), 11, T, 0)
    assert {"gamma", "beta", "qkv_bias", "out_bias", "bias"} <= {
        v.path.rsplit("/", 1)[1] for v in softmax.weights}


def test_si_attention_weights_match_numpy_and_normalise_over_causal_positions():
    layer = block().attn
    x = rand((B, T, D), 1)
    got = layer.attention_weights(tf.constant(x)).numpy()
    want, sums = np_si_attention_weights(x, layer.qkv_kernel.numpy(), H)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=1e-6)     # weights are in [0, 1]
    assert np.all(got[..., np.triu_indices(T, 1)[0], np.triu_indices(T, 1)[1]] == 0)
    row = got.sum(-1)
    np.testing.assert_allclose(row[sums[..., 0] > 0], 1.0, atol=1e-6)
    assert np.all(row[sums[..., 0] == 0] == 0)


# ------------------------------------------------------------------ R1-R3: homogeneity


@pytest.mark.parametrize("a,b", [(3.7, 0.3), (1e-2, 50.0), (2.0, 2.0)])
def test_r1_attention_weights_are_invariant_to_scaling_query_and_key(a, b):
    layer = block(seed=2).attn
    x = tf.constant(rand((B, T, D), 3))
    base = layer.attention_weights(x).numpy()
    _, sums = np_si_attention_weights(x.numpy(), layer.qkv_kernel.numpy(), H)
    # the premise of exactness: every row's sum is 0 or far above TINY / min(1, ab)
    assert np.all((sums == 0) | (sums * min(1.0, a * b) > 1e-6))
    scale_qkvo(layer, a=a, b=b)
    np.testing.assert_allclose(layer.attention_weights(x).numpy(), base, rtol=RTOL, atol=1e-6)


def test_r1_fails_for_softmax_attention():
    layer = block(si=False, seed=2).attn
    x = tf.constant(rand((B, T, D), 3))
    base = layer.attention_weights(x).numpy()
    scale_qkvo(layer, a=3.0, b=3.0)
    assert np.abs(layer.attention_weights(x).numpy() - base).max() > 1e-2


@pytest.mark.parametrize("a,b,c,d", [(3.7, 0.3, 2.5, 0.6), (1.7, 1.7, 1.7, 1.7),
                                     (0.1, 10.0, 4.0, 1e-2)])
def test_r2_attention_branch_is_homogeneous_in_w_v_and_w_o(a, b, c, d):
    layer = block(seed=4)
    x = tf.constant(rand((B, T, D), 5, loc=0.3, scale=2.0))
    base = layer.attention_branch(x).numpy()
    scale_qkvo(layer.attn, a, b, c, d)
    close(layer.attention_branch(x).numpy(), c * d * base)


@pytest.mark.parametrize("a,b", [(3.7, 0.3), (1.7, 1.7), (1e-2, 20.0)])
def test_r3_ff_branch_is_homogeneous_in_w_1_and_w_2(a, b):
    layer = block(seed=6)
    x = tf.constant(rand((B, T, D), 7, loc=-0.5, scale=3.0))
    base = layer.ff_branch(x).numpy()
    layer.ff_1.kernel.assign(layer.ff_1.kernel * a)
    layer.ff_2.kernel.assign(layer.ff_2.kernel * b)
    close(layer.ff_branch(x).numpy(), a * b * base)


def test_branches_of_the_softmax_block_are_not_homogeneous():
    # With random biases and LayerNorm weights (at initialisation they are 0 and 1, which
    # would hide the difference), scaling the matrices by 2 does not scale a branch by 4.
    layer = block(si=False, seed=6)
    for i, v in enumerate(layer.weights):
        if v.path.rsplit("/", 1)[1] in ("qkv_bias", "out_bias", "bias", "beta", "gamma"):
            v.assign(rand(v.shape, 100 + i, loc=0.5, scale=0.5))
    x = tf.constant(rand((B, T, D), 7))
    attn, ff = layer.attention_branch(x).numpy(), layer.ff_branch(x).numpy()
    scale_qkvo(layer.attn, 2.0, 2.0, 2.0, 2.0)
    layer.ff_1.kernel.assign(layer.ff_1.kernel * 2.0)
    layer.ff_2.kernel.assign(layer.ff_2.kernel * 2.0)
    assert np.abs(layer.attention_branch(x).numpy() - 4 * attn).max() > 1e-2
    assert np.abs(layer.ff_branch(x).numpy() - 4 * ff).max() > 1e-2


# ------------------------------------------------------------------ LayerNorm's eps


@pytest.mark.parametrize("lam", [0.5, 4.0])
def test_ff_branch_input_scale_changes_only_by_the_eps_ratio(lam):
    # Small-variance tokens (var ~ 1e-4 ~ 10 eps) so that eps visibly matters.
    layer = block(seed=8)
    x = rand((B, T, D), 9, loc=1.0, scale=0.01)
    base = layer.ff_branch(tf.constant(x)).numpy()
    scaled = layer.ff_branch(tf.constant(x * np.float32(lam))).numpy()
    var = x.astype(np.float64).var(-1, keepdims=True)
    eps = NORM_EPSILON
    r = np.sqrt((var + eps) / (var + eps / lam ** 2))       # LN_eps(lam x) = r LN_eps(x)
    close(scaled, r * base)
    # the stated bound on the deviation from invariance, and that it is not vacuous here
    assert np.all(np.abs(r - 1) <= eps / (2 * var) * abs(1 - lam ** -2))
    assert np.abs(r - 1).max() > 1e-3


def _body(model):
    return keras.Model(model.inputs[0], model.get_layer("final_norm").output)


def test_r4_body_with_scaled_tables_and_matrices_equals_body_with_eps_over_lambda4():
    lam = 3.0
    cfg = ModelConfig(kind="si_transformer", hidden_dim=D, num_layers=2, num_heads=H, ff_dim=FF)
    model = build_model(cfg, vocab_size=13, seq_len=T, seed=3)
    tokens = np.random.default_rng(10).integers(0, 13, size=(B, T)).astype(np.int32)
    reference = build_model(cfg, vocab_size=13, seq_len=T, seed=3)
    for layer in reference.layers:                # Body(E, P, W; eps / lam^4)
        for sub in [layer, getattr(layer, "ln_1", None), getattr(layer, "ln_2", None)]:
            if isinstance(sub, keras.layers.LayerNormalization):
                sub.epsilon = NORM_EPSILON / lam ** 4
    want = _body(reference)(tokens).numpy()
    for v in model.weights:                       # Body(lam^2 E, lam^2 P, lam W; eps)
        if v.path in ("embedding/embeddings", "position/embeddings"):
            v.assign(v * lam ** 2)
        elif v.path.startswith("block_"):
            v.assign(v * lam)
    close(_body(model)(tokens).numpy(), want)
    # The logits layer is outside the body; with it, the logits agree too.
    close(model(tokens).numpy(), reference(tokens).numpy())


# ------------------------------------------------------------------ all-zero rows


def test_rows_without_a_positive_score_give_zero_attention_and_finite_gradients():
    layer = block(seed=11)
    w = layer.attn.qkv_kernel.numpy()
    w[:, D:2 * D] = -w[:, :D]                # W_K = -W_Q: s_ii = -|q_i|^2 / sqrt(Dh) < 0
    layer.attn.qkv_kernel.assign(w)
    x = tf.constant(rand((B, T, D), 12))
    weights = layer.attn.attention_weights(x).numpy()
    assert np.all(weights[:, :, 0, :] == 0)  # position 0 has only itself as a key
    with tf.GradientTape() as tape:
        y = layer(x)
        loss = tf.reduce_sum(y ** 2)
    grads = tape.gradient(loss, layer.trainable_variables)
    # position 0 gets nothing from attention: its output is x_0 + F_ff(x_0)
    x0 = x[:, :1]
    close(y.numpy()[:, :1], (x0 + layer.ff_branch(x0)).numpy())
    assert all(np.all(np.isfinite(tf.convert_to_tensor(g).numpy())) for g in grads)
