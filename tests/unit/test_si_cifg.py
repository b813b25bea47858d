"""CIFG / SI-CIFG cells against an independent NumPy implementation, and scale invariance."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from fl_sim.models.cifg import CIFG, CIFGCell  # noqa: E402
from fl_sim.models.scale_invariant import si_normalize, si_sigmoid, si_tanh  # noqa: E402

ALPHAS = (1e-3, 0.1, 0.7, 3.0, 1e3)


# ------------------------------------------------------------------ NumPy reference (float64)

def np_sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def np_si_sigmoid(z):
    r = np.maximum(z, 0.0)
    return r / np.maximum(r.max(axis=-1, keepdims=True), 1e-12)


def np_si_tanh(z):
    return z / np.maximum(np.abs(z).max(axis=-1, keepdims=True), 1e-12)


def np_cifg_step(x, h, c, W, U, b, P, si):
    """f = g(.), i = 1 - f, c~ = a(.), c' = f c + i c~, o = g(.), h' = P (o a(c'))."""
    g, a = (np_si_sigmoid, np_si_tanh) if si else (np_sigmoid, np.tanh)
    H = c.shape[-1]
    z = x @ W + h @ U + b
    zf, zc, zo = z[:, :H], z[:, H:2 * H], z[:, 2 * H:]
    f = g(zf)
    c_new = f * c + (1.0 - f) * a(zc)
    m = g(zo) * a(c_new)
    h_new = m @ P if P is not None else m
    return h_new, c_new


def random_cell(si, units=6, proj=4, input_dim=5, seed=0):
    """A built CIFGCell with random (not default-initialised) weights, and those weights."""
    rng = np.random.default_rng(seed)
    cell = CIFGCell(units, projection_dim=proj, scale_invariant=si)
    cell.build((None, input_dim))
    out_dim = proj if proj else units
    W = rng.normal(size=(input_dim, 3 * units))
    U = rng.normal(size=(out_dim, 3 * units))
    b = rng.normal(size=(3 * units,))
    P = rng.normal(size=(units, proj)) if proj else None
    cell.kernel.assign(W.astype(np.float32))
    cell.recurrent_kernel.assign(U.astype(np.float32))
    cell.bias.assign(b.astype(np.float32))
    if proj:
        cell.projection.assign(P.astype(np.float32))
    # use the float32-rounded values in the reference too
    f32 = lambda a: None if a is None else a.astype(np.float32).astype(np.float64)  # noqa: E731
    return cell, (f32(W), f32(U), f32(b), f32(P))


# ------------------------------------------------------------------ activations


def test_si_activations_match_numpy_and_ranges():
    # Prepare
    z = np.random.default_rng(1).normal(size=(7, 11)).astype(np.float32)
    # Execute
    s = si_sigmoid(tf.constant(z)).numpy()
    t = si_tanh(tf.constant(z)).numpy()
    # Assert
    np.testing.assert_allclose(s, np_si_sigmoid(z.astype(np.float64)), atol=1e-6)
    np.testing.assert_allclose(t, np_si_tanh(z.astype(np.float64)), atol=1e-6)
    assert s.min() >= 0 and s.max() <= 1 and np.allclose(s.max(axis=-1), 1.0)
    assert t.min() >= -1 and t.max() <= 1 and np.allclose(np.abs(t).max(axis=-1), 1.0)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_si_activations_are_scale_invariant(alpha):
    z = np.random.default_rng(2).normal(size=(5, 32)).astype(np.float32)
    for fn in (si_sigmoid, si_tanh, si_normalize):
        base = fn(tf.constant(z)).numpy()
        scaled = fn(tf.constant(z * np.float32(alpha))).numpy()
        np.testing.assert_allclose(scaled, base, rtol=1e-5, atol=1e-6, err_msg=fn.__name__)
    # the standard activations are not
    assert np.abs(tf.sigmoid(z * alpha).numpy() - tf.sigmoid(z).numpy()).max() > 1e-2


def test_si_normalize_masks_before_normalising():
    scores = np.random.default_rng(3).normal(size=(2, 3, 4, 4)).astype(np.float32)
    mask = np.tril(np.ones((4, 4), np.float32))
    w = si_normalize(tf.constant(scores), tf.constant(mask)).numpy()
    assert np.all(w[..., mask == 0] == 0)
    assert np.all(w >= 0)
    sums = w.sum(-1)
    # each row sums to 1, or is all zero when no allowed score is positive
    allowed_pos = (np.maximum(scores, 0) * mask).sum(-1) > 0
    np.testing.assert_allclose(sums[allowed_pos], 1.0, atol=1e-6)
    np.testing.assert_array_equal(sums[~allowed_pos], 0.0)
    ref = np.maximum(scores, 0) * mask
    ref = ref / np.maximum(ref.sum(-1, keepdims=True), 1e-12)
    np.testing.assert_allclose(w, ref, atol=1e-6)


def test_zero_preactivation_gives_finite_outputs_and_gradients():
    z = tf.zeros((3, 8))
    for fn in (si_sigmoid, si_tanh, si_normalize):
        with tf.GradientTape() as tape:
            tape.watch(z)
            y = fn(z)
            loss = tf.reduce_sum(y * tf.range(8, dtype=tf.float32))
        g = tape.gradient(loss, z)
        assert np.all(y.numpy() == 0), fn.__name__
        assert np.all(np.isfinite(g.numpy())), fn.__name__
    # negative-only input: the SI sigmoid is all zero, not NaN
    assert np.all(si_sigmoid(-tf.ones((2, 4))).numpy() == 0)


def test_cell_with_zero_weights_gives_finite_outputs_and_gradients():
    layer = CIFG(6, projection_dim=4, scale_invariant=True, forget_bias=0.0)
    x = tf.zeros((2, 5, 3))
    layer.build(x.shape)
    for v in layer.trainable_variables:
        v.assign(tf.zeros_like(v))
    with tf.GradientTape() as tape:
        y = layer(x)
        loss = tf.reduce_sum(y)
    grads = tape.gradient(loss, layer.trainable_variables)
    assert np.all(np.isfinite(y.numpy())) and np.all(y.numpy() == 0)
    for g in grads:
        assert g is not None and np.all(np.isfinite(tf.convert_to_tensor(g).numpy()))


# ------------------------------------------------------------------ cells vs NumPy


@pytest.mark.parametrize("si", [False, True], ids=["cifg", "si_cifg"])
@pytest.mark.parametrize("proj", [0, 4], ids=["noproj", "proj"])
def test_cell_one_step_matches_numpy(si, proj):
    # Prepare
    cell, (W, U, b, P) = random_cell(si, proj=proj, seed=4)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3, 5)).astype(np.float32)
    h = rng.normal(size=(3, cell.out_dim)).astype(np.float32)
    c = rng.normal(size=(3, cell.units)).astype(np.float32)
    # Execute
    out, (h1, c1) = cell(tf.constant(x), (tf.constant(h), tf.constant(c)))
    # Assert
    h_ref, c_ref = np_cifg_step(x.astype(np.float64), h.astype(np.float64),
                                c.astype(np.float64), W, U, b, P, si)
    np.testing.assert_allclose(h1.numpy(), h_ref, atol=1e-5)
    np.testing.assert_allclose(c1.numpy(), c_ref, atol=1e-5)
    np.testing.assert_array_equal(out.numpy(), h1.numpy())


@pytest.mark.parametrize("si", [False, True], ids=["cifg", "si_cifg"])
def test_sequence_layer_matches_numpy(si):
    # Prepare
    steps, batch, input_dim = 6, 3, 5
    layer = CIFG(6, projection_dim=4, scale_invariant=si)
    layer.build((None, steps, input_dim))
    cell = layer.cell
    _, (W, U, b, P) = random_cell(si, seed=6)
    for var, val in ((cell.kernel, W), (cell.recurrent_kernel, U), (cell.bias, b),
                     (cell.projection, P)):
        var.assign(val.astype(np.float32))
    x = np.random.default_rng(7).normal(size=(batch, steps, input_dim)).astype(np.float32)
    # Execute
    y, hT, cT = layer(tf.constant(x), return_state=True)
    # Assert: zero initial state, one NumPy step per time step
    h, c = np.zeros((batch, 4)), np.zeros((batch, 6))
    ref = []
    for t in range(steps):
        h, c = np_cifg_step(x[:, t].astype(np.float64), h, c, W, U, b, P, si)
        ref.append(h)
    np.testing.assert_allclose(y.numpy(), np.stack(ref, 1), atol=1e-5)
    np.testing.assert_allclose(hT.numpy(), h, atol=1e-5)
    np.testing.assert_allclose(cT.numpy(), c, atol=1e-5)


def test_sequence_layer_matches_keras_rnn_with_the_same_cell():
    layer = CIFG(6, projection_dim=4, scale_invariant=True, seed=3)
    x = tf.random.stateless_normal((2, 5, 3), seed=(1, 2))
    y = layer(x)
    y_rnn = keras.layers.RNN(layer.cell, return_sequences=True)(x)
    np.testing.assert_allclose(y.numpy(), y_rnn.numpy(), atol=1e-6)


# ------------------------------------------------------------------ invariance of the cell


def _run_scaled(si, alpha):
    layer = CIFG(8, projection_dim=4, scale_invariant=si, seed=11)
    x = np.random.default_rng(8).normal(size=(4, 6, 5)).astype(np.float32)
    base = layer(tf.constant(x)).numpy()
    cell = layer.cell
    for var in (cell.kernel, cell.recurrent_kernel, cell.bias):
        var.assign(var * alpha)
    return base, layer(tf.constant(x)).numpy()


@pytest.mark.parametrize("alpha", ALPHAS)
def test_si_cifg_output_is_invariant_to_scaling_cell_weights(alpha):
    base, scaled = _run_scaled(True, alpha)
    np.testing.assert_allclose(scaled, base, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("alpha", (0.1, 3.0))
def test_cifg_output_is_not_scale_invariant(alpha):
    base, scaled = _run_scaled(False, alpha)
    assert np.abs(scaled - base).max() > 1e-2
