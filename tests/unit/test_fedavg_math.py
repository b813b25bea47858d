"""FedAvg math against a plain NumPy reference, and the server optimizers."""

import numpy as np
import pytest

from fl_sim.fedavg_math import ServerAdam, ServerSGD, weighted_mean


def numpy_fedavg(updates, weights):
    w = np.array(weights, dtype=np.float64) / np.sum(weights)
    return [sum(wi * u[i].astype(np.float64) for wi, u in zip(w, updates))
            for i in range(len(updates[0]))]


def test_weighted_mean_exact_small_case():
    # Prepare
    u1 = [np.array([1.0, 2.0], np.float32), np.array([[0.0]], np.float32)]
    u2 = [np.array([3.0, 6.0], np.float32), np.array([[4.0]], np.float32)]
    # Execute
    out = weighted_mean([u1, u2], [1, 3])
    # Assert
    np.testing.assert_array_equal(out[0], np.array([2.5, 5.0], np.float32))
    np.testing.assert_array_equal(out[1], np.array([[3.0]], np.float32))
    assert out[0].dtype == np.float32


def test_weighted_mean_matches_numpy_reference_random():
    r = np.random.default_rng(0)
    shapes = [(5, 3), (3,), (2, 2, 2)]
    updates = [[r.normal(size=s).astype(np.float32) for s in shapes] for _ in range(7)]
    weights = r.integers(1, 100, size=7)
    for got, ref in zip(weighted_mean(updates, weights), numpy_fedavg(updates, weights)):
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-7)


def test_weighted_mean_rejects_bad_input():
    u = [np.zeros(2, np.float32)]
    with pytest.raises(ValueError):
        weighted_mean([], [])
    with pytest.raises(ValueError):
        weighted_mean([u, u], [0, 0])
    with pytest.raises(ValueError):
        weighted_mean([u, [np.zeros(3, np.float32)]], [1, 1])


def test_server_sgd_is_fedavg_at_lr1_and_momentum():
    p = [np.array([1.0, 1.0])]
    d = [np.array([0.5, -1.0])]
    np.testing.assert_array_equal(ServerSGD(lr=1.0).step(p, d)[0], [1.5, 0.0])
    opt = ServerSGD(lr=0.1, momentum=0.9)
    p1 = opt.step(p, d)
    p2 = opt.step(p1, d)
    np.testing.assert_allclose(p2[0], p[0] + 0.1 * d[0] + 0.1 * (0.9 * d[0] + d[0]))


def test_server_adam_matches_reddi_algorithm_and_state_round_trips():
    p = [np.array([0.0, 0.0])]
    d = [np.array([1.0, -2.0])]
    opt = ServerAdam(lr=0.1, beta1=0.9, beta2=0.99, epsilon=1e-3)
    out = opt.step(p, d)
    m = 0.1 * d[0]
    v = 0.01 * d[0] ** 2
    np.testing.assert_allclose(out[0], 0.1 * m / (np.sqrt(v) + 1e-3))
    clone = ServerAdam(lr=0.1, beta1=0.9, beta2=0.99, epsilon=1e-3)
    clone.load_state(opt.state())
    np.testing.assert_allclose(clone.step(out, d)[0], opt.step(out, d)[0])
