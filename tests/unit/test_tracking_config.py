"""[tracking]: off by default, validated like every section, and a missing extra is named."""

import sys

import pytest

from fl_sim.config import ConfigError, from_dict
from fl_sim.tracking import Tracker, TrackingError, check_available, numeric, start_tracking


def test_off_by_default_and_validated(tmp_path):
    cfg = from_dict({})
    assert cfg.tracking.backend == "none"
    assert type(start_tracking(cfg, tmp_path)) is Tracker
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match="tracking.backend = 'tensorboardx': expected one of 'none', 'mlflow'"):
        from_dict({"tracking": {"backend": "tensorboardx"}})


def test_a_missing_extra_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)   # what an environment without it gives
    with pytest.raises(TrackingError, match=r"pip install 'fl-sim\[mlflow\]'"):
        check_available(from_dict({"tracking": {"backend": "mlflow"}}))


def test_only_numbers_are_logged():
    row = {"type": "round", "round": 3, "train_loss": 1.5, "clients_sampled": 4, "skipped": 0,
           "accountant": "rdp", "ok": True, "skip_reason": "x"}
    assert numeric(row) == {"train_loss": 1.5, "clients_sampled": 4.0, "skipped": 0.0}
