"""DP-FedAvg as a strategy wrapper: exact FedAvg at z=0 with a huge clip, ledger and budget."""

import numpy as np
import pytest

from fl_sim.config import from_dict
from fl_sim.privacy import PrivacyLedger
from strategies.registry import make_strategy


def strategy(**privacy):
    cfg = from_dict({"experiment": {"rounds": 5},
                     "server": {"clients_per_round": 3, "weighted": False},
                     "privacy": {"enabled": True, **privacy}})
    s = make_strategy("fedavg", cfg, [f"c{i}" for i in range(30)], "")
    s.inner.current = [np.zeros(4, np.float32)]
    s.inner.last_cohort = ["c0", "c1", "c2"]
    return s


def res(cid, vec):
    return (cid, [np.asarray(vec, np.float32)], {"num_examples": 5, "train_loss": 1.0})


def test_zero_noise_huge_clip_equals_fedavg_exactly():
    # Prepare
    s = strategy(noise_multiplier=0.0, clip_norm=1e9)
    updates = [res("c0", [1, 2, 3, 4]), res("c1", [0, 0, 0, 3]), res("c2", [2, -2, 0, 2])]
    # Execute
    new, m = s.inner.aggregate_results(1, updates)
    # Assert: unweighted mean, since all m = 3 expected clients reported
    np.testing.assert_array_equal(new[0], np.array([1, 0, 1, 3], np.float32))
    assert m["fraction_clipped"] == 0.0 and m["noise_multiplier"] == 0.0


def test_clipping_noise_and_ledger():
    s = strategy(noise_multiplier=1.0, clip_norm=0.5)
    new, m = s.inner.aggregate_results(1, [res("c0", [10, 0, 0, 0]), res("c1", [0, 0, 0, 0.1])])
    assert m["fraction_clipped"] == 0.5 and m["clip_norm"] == 0.5
    assert s.ledger.rounds == 1
    ref = PrivacyLedger(30, 3, "fixed")
    ref.record_round(1.0)
    assert s.round_metrics(1)["epsilon_rdp"] == pytest.approx(ref.epsilon("rdp"), rel=1e-12)
    # an empty round still releases noise and is charged
    s.inner.last_cohort = ["c3", "c4", "c5"]
    new2, m2 = s.inner.aggregate_results(2, [])
    assert new2 is not None and m2["skipped"] == 0 and s.ledger.rounds == 2


def test_budget_stop_before_the_round_that_would_exceed():
    s = strategy(noise_multiplier=1.0, max_epsilon=1e9)
    assert s.before_round(1) is None
    for r in range(1, 4):
        s.inner.aggregate_results(r, [res("c0", [1, 0, 0, 0])])
    eps_next = s.ledger.epsilon_if_next_round(1.0)
    tight = strategy(noise_multiplier=1.0, max_epsilon=eps_next * 0.999)
    tight.load_extra_state(s.extra_state())
    reason = tight.before_round(4)
    assert reason and "privacy.max_epsilon" in reason
    loose = strategy(noise_multiplier=1.0, max_epsilon=eps_next * 1.001)
    loose.load_extra_state(s.extra_state())
    assert loose.before_round(4) is None


def test_checkpointed_ledger_gives_the_same_epsilon():
    s = strategy(noise_multiplier=0.8, adaptive_clipping=True, clipped_count_stddev=1.0)
    for r in range(1, 4):
        s.inner.aggregate_results(r, [res("c0", [1, 0, 0, 0]), res("c1", [0.01, 0, 0, 0])])
    restored = strategy(noise_multiplier=0.8, adaptive_clipping=True, clipped_count_stddev=1.0)
    restored.load_extra_state(s.extra_state())
    assert restored.round_metrics(3) == s.round_metrics(3)
    assert restored.dp.current_clip == s.dp.current_clip != 0.1


def test_target_epsilon_calibrates_z():
    s = strategy(target_epsilon=5.0)
    assert s.z > 0
    led = PrivacyLedger(30, 3, "fixed")
    led.record_round(s.z, 5)
    assert led.epsilon("rdp") <= 5.0 + 1e-6
