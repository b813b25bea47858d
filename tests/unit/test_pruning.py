"""Federated magnitude pruning: Zhu & Gupta schedule, exact mask counts, masks only grow,
and the server-side strategy wrapper (masks applied, sparsity reported, checkpoint state)."""

import numpy as np
import pytest

from fl_sim.config import from_dict
from fl_sim.pruning_math import (FederatedPruner, apply_masks, compute_masks, is_pruning_round,
                            polynomial_sparsity, prunable_flags, prune_once, resolve_end_round,
                            sparsity_report)
from strategies.registry import make_strategy

# --------------------------------------------------------------------------- schedule


def test_polynomial_schedule_values():
    # Prepare: s_f = 0.8 from round 2 to 10, every 2 rounds, cubic (Zhu & Gupta eq. 1)
    kw = dict(target=0.8, begin=2, end=10, frequency=2, power=3.0)
    # Execute
    got = [polynomial_sparsity(t, **kw) for t in range(1, 13)]
    # Assert: s_t = 0.8 * (1 - (1 - (t_last - 2) / 8) ** 3), constant between pruning rounds
    expected = [0.0,
                0.0, 0.0,                                      # t = 2, 3: frac 0
                0.8 * (1 - 0.75 ** 3), 0.8 * (1 - 0.75 ** 3),  # t = 4, 5
                0.8 * (1 - 0.5 ** 3), 0.8 * (1 - 0.5 ** 3),    # t = 6, 7
                0.8 * (1 - 0.25 ** 3), 0.8 * (1 - 0.25 ** 3),  # t = 8, 9
                0.8, 0.8, 0.8]                                 # from end on: the target
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-15)


def test_schedule_is_monotone_and_reaches_target_when_span_not_multiple_of_frequency():
    kw = dict(target=0.9, begin=1, end=8, frequency=3, power=3.0)
    s = [polynomial_sparsity(t, **kw) for t in range(0, 12)]
    assert all(b >= a for a, b in zip(s, s[1:]))
    assert s[8] == 0.9 and s[7] < 0.9
    assert [t for t in range(12) if is_pruning_round(t, begin=1, end=8, frequency=3)] == [1, 4, 7, 8]


def test_schedule_rejects_bad_spans_and_default_end_round():
    with pytest.raises(ValueError, match="before the begin round"):
        polynomial_sparsity(3, target=0.5, begin=5, end=4)
    assert resolve_end_round(0, 20) == 15
    assert resolve_end_round(0, 2, begin_round=3) == 3
    assert resolve_end_round(7, 20) == 7


# --------------------------------------------------------------------------- masks


def test_mask_counts_are_exact_even_with_ties():
    # Prepare: many equal magnitudes, so a threshold rule would prune too many or too few
    w = np.array([[1.0, -1.0, 1.0, 0.5], [0.5, -0.5, 2.0, 1.0], [3.0, 1.0, -1.0, 0.5]], np.float32)
    for s, k in [(0.0, 0), (0.25, 3), (0.5, 6), (0.75, 9), (0.9, 11)]:
        # Execute
        (m,) = compute_masks([w], s, [True])
        # Assert: exactly round(s * 12) entries pruned, and they are the smallest
        assert int((~m).sum()) == k
        if k:
            assert np.abs(w[~m]).max() <= np.abs(w[m]).min()


def test_masks_only_grow_even_when_pruned_weights_regrow():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(20, 10)).astype(np.float32)
    (m1,) = compute_masks([w], 0.3, [True])
    # A pruned entry comes back large (clients trained it): it must stay pruned.
    w2 = w.copy()
    w2[~m1] = 100.0
    (m2,) = compute_masks([w2], 0.6, [True], previous=[m1])
    assert int((~m2).sum()) == 120
    assert not np.any(m2 & ~m1)                   # nothing un-pruned
    # Same sparsity again: the mask does not change.
    (m3,) = compute_masks([w2 * 3], 0.6, [True], previous=[m2])
    np.testing.assert_array_equal(m3, m2)


def test_prunable_flags_apply_masks_and_report():
    ws = [np.ones((5, 4)), np.ones(4), np.ones((8, 4)), np.ones((4, 3))]
    names = ["embedding/embeddings", "proj/bias", "position/embeddings", "logits/kernel"]
    assert prunable_flags(ws, names) == [True, False, False, True]
    assert prunable_flags(ws) == [True, False, True, True]          # by shape only
    pruned, masks = prune_once([w * np.arange(w.size).reshape(w.shape) for w in ws], 0.5, names)
    assert masks[1] is None and masks[2] is None
    rep = sparsity_report(pruned, prunable_flags(ws, names))
    assert rep["prunable_sparsity"] == pytest.approx(16 / 32)        # 10 + 6 of 20 + 12
    assert apply_masks(pruned, masks)[0].dtype == pruned[0].dtype
    np.testing.assert_array_equal(apply_masks(pruned, masks)[3], pruned[3])   # idempotent


def test_federated_pruner_state_round_trip_catches_up_after_skipped_round():
    cfg = from_dict({"experiment": {"rounds": 10},
                     "pruning": {"enabled": True, "target_sparsity": 0.5, "begin_round": 2,
                                 "end_round": 6, "frequency": 2}}).pruning
    rng = np.random.default_rng(1)
    ws = [rng.normal(size=(10, 10)), rng.normal(size=10)]
    p = FederatedPruner(cfg, 10, ws)
    out = p.after_aggregation(4, ws)       # rounds 2 and 3 were skipped: catch up to s(4)
    assert p.sparsity == pytest.approx(0.5 * (1 - 0.5 ** 3))
    assert int((out[0] == 0).sum()) == round(p.sparsity * 100)
    q = FederatedPruner(cfg, 10, ws)
    q.load_state(p.state())
    np.testing.assert_array_equal(q.masks[0], p.masks[0])
    assert q.masks[1] is None and q.sparsity == p.sparsity


# --------------------------------------------------------------------------- strategy wrapper


def pruned_strategy(privacy=False, **pruning):
    raw = {"experiment": {"rounds": 4, "seed": 0},
           "data": {"seq_len": 4},
           "model": {"kind": "cifg", "embedding_dim": 3, "hidden_dim": 4, "projection_dim": 2},
           "server": {"clients_per_round": 3},
           "pruning": {"enabled": True, "target_sparsity": 0.5, "begin_round": 1, "end_round": 2,
                       **pruning}}
    if privacy:
        raw["privacy"] = {"enabled": True, "noise_multiplier": 0.0, "clip_norm": 1e9}
    return make_strategy("fedavg", from_dict(raw), [f"c{i}" for i in range(30)], "")


def cifg_weights(seed=0):
    # embedding [V=12, E=3], cifg kernel [3, 12], recurrent [2, 12], bias [12],
    # projection [4, 2], proj kernel [2, 3], proj bias [3], logits kernel [3, 12], bias [12]
    shapes = [(12, 3), (3, 12), (2, 12), (12,), (4, 2), (2, 3), (3,), (3, 12), (12,)]
    rng = np.random.default_rng(seed)
    return [rng.normal(size=s).astype(np.float32) for s in shapes]


def test_wrapper_masks_weights_reports_sparsity_and_resumes_exactly():
    # Prepare
    s = pruned_strategy()
    assert type(s).__name__ == "FederatedPruning"
    # Execute: round 1 (s = 0), round 2 (s = target)
    w1 = s.after_round(1, cifg_weights(1))
    w2 = s.after_round(2, cifg_weights(2))
    m = s.round_metrics(2)
    # Assert: every 2-D tensor exactly half zero, biases untouched
    for w in w2:
        if w.ndim == 2:
            assert int((w == 0).sum()) == round(0.5 * w.size)
        else:
            assert not np.any(w == 0)
    assert not any(np.any(w == 0) for w in w1)
    assert m["pruning_target_sparsity"] == 0.5
    assert m["pruning_sparsity"] == pytest.approx(0.5, abs=0.01)
    # Resume: a fresh strategy loaded from state() masks round 3 exactly like the original.
    state = s.state()
    assert any(k.startswith("pruning_mask_") for k in state)
    r = pruned_strategy()
    r.load_state(state)
    new = cifg_weights(3)
    for a, b in zip(s.after_round(3, new), r.after_round(3, new)):
        np.testing.assert_array_equal(a, b)


def test_wrapper_composes_with_dp_and_keeps_its_state():
    s = pruned_strategy(privacy=True)
    assert type(s).__name__ == "FederatedPruning" and type(s.inner).__name__ == "DPFedAvg"
    s.after_round(2, cifg_weights())
    assert "epsilon_rdp" in s.round_metrics(2) and "pruning_sparsity" in s.round_metrics(2)
    assert "privacy_ledger" in s.extra_state()


def test_wrapper_rejects_an_impossible_schedule():
    with pytest.raises(ValueError, match="before"):
        pruned_strategy(begin_round=3, end_round=2)
