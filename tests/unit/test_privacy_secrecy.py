"""Noise secrecy (privacy.reproducible_noise) and owner-only checkpoints."""

import os
import stat

import numpy as np
import pytest

from fl_sim import checkpoint
from fl_sim.config import ConfigError, for_runtime, from_dict
from fl_sim.privacy import DPAggregator
from fl_sim.sampling import sample_clients
from fl_sim.seeding import rng
from strategies.registry import make_strategy


def _mean(reproducible, seed=4, adaptive=False):
    agg = DPAggregator(noise_multiplier=1.0, clip_norm=1.0, expected_cohort=3, seed=seed,
                       reproducible=reproducible, adaptive=adaptive, clipped_count_stddev=2.0)
    mean, report = agg.aggregate([[np.zeros(50, np.float32)]], server_round=2)
    return mean[0], report


def test_reproducible_noise_is_the_seeds_and_secret_noise_is_not():
    # Seeded: exactly rng(seed, "dp-noise", round) (z C = 1 on the sum, / m = 3)
    a, _ = _mean(True)
    expected = (rng(4, "dp-noise", 2).normal(0.0, 1.0, size=50) / 3).astype(np.float32)
    np.testing.assert_array_equal(a, expected)
    # OS entropy: two aggregators with the same seed draw different noise, neither the seed's.
    # Equal draws would need two 50-dim float64 Gaussian vectors to coincide (probability 0).
    b, rb = _mean(False)
    c, _ = _mean(False)
    assert not np.array_equal(b, c) and not np.array_equal(b, a)
    assert rb["noise_std"] == 1.0  # same mechanism, only the randomness differs
    # the adaptive count noise too
    _, r1 = _mean(False, adaptive=True)
    _, r2 = _mean(False, adaptive=True)
    assert r1["count_noise"] != r2["count_noise"]


def test_secret_cohorts_come_from_the_generator_not_the_seed():
    ids = [f"c{i}" for i in range(1000)]
    seeded = sample_clients(ids, 10, 0, 1, "fixed")
    assert seeded == sample_clients(ids, 10, 0, 1, "fixed", rng(0, "cohort", 1))
    assert sample_clients(ids, 10, 0, 1, "fixed", rng(99, "x")) != seeded


def test_reproducible_noise_setting_and_its_runtime_default():
    auto = from_dict({"privacy": {"enabled": True}})
    assert auto.privacy.reproducible_noise == "auto"
    assert for_runtime(auto, deployment=False).privacy.reproducible_noise == "true"
    assert for_runtime(auto, deployment=True).privacy.reproducible_noise == "false"
    explicit = from_dict({"privacy": {"reproducible_noise": True}})  # a TOML boolean
    assert explicit.privacy.reproducible_noise == "true"
    assert for_runtime(explicit, deployment=True).privacy.reproducible_noise == "true"
    with pytest.raises(ConfigError, match="privacy.reproducible_noise = 'yes'"):
        from_dict({"privacy": {"reproducible_noise": "yes"}})


@pytest.mark.parametrize("mode,needle", [("true", "Noise: reproducible"), ("false", "Noise: secret")])
def test_statement_says_which_noise_was_used(mode, needle):
    cfg = from_dict({"server": {"clients_per_round": 3},
                     "privacy": {"enabled": True, "reproducible_noise": mode}})
    s = make_strategy("fedavg", cfg, [f"c{i}" for i in range(30)], "")
    report = s.final_report()
    assert needle in report["privacy_statement"]
    assert report["noise_source"] == ("seed" if mode == "true" else "os-entropy")


def test_checkpoints_are_owner_only_whatever_the_umask(tmp_path):
    old = os.umask(0o000)  # the most permissive umask: files would be 0666 by default
    try:
        checkpoint.save(tmp_path, 1, [np.zeros(2)], {}, {})
        checkpoint.save(tmp_path, 2, [np.zeros(2)], {}, {})
    finally:
        os.umask(old)
    ckpt = tmp_path / "checkpoints"
    assert stat.S_IMODE(ckpt.stat().st_mode) == 0o700
    files = list(ckpt.iterdir())
    assert {p.name for p in files} == {"latest.json", "round-00001.npz", "round-00002.npz"}
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
