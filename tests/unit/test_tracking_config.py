"""[tracking]: off by default, validated like every section, and a missing extra is named."""

import os
import sys

import pytest

from fl_sim.config import ConfigError, from_dict
from fl_sim.tracking import Tracker, TrackingError, artifact_name, check_available, numeric, start_tracking


def test_off_by_default_and_validated(tmp_path):
    cfg = from_dict({})
    assert cfg.tracking.backend == "none"
    assert type(start_tracking(cfg, tmp_path)) is Tracker
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match="tracking.backend = 'tensorboardx': expected one of 'none', 'mlflow', 'wandb'"):
        from_dict({"tracking": {"backend": "tensorboardx"}})


@pytest.mark.parametrize("backend", ["mlflow", "wandb"])
def test_a_missing_extra_is_named(monkeypatch, backend):
    monkeypatch.setitem(sys.modules, backend, None)   # what an environment without it gives
    with pytest.raises(TrackingError, match=rf"'{backend}' needs .*pip install 'fl-sim\[{backend}\]'"):
        check_available(from_dict({"tracking": {"backend": backend}}))


def test_wandb_artifact_names_use_only_the_characters_wandb_allows(tmp_path):
    cfg = from_dict({"experiment": {"name": "demo", "output_dir": str(tmp_path)}})
    assert artifact_name(cfg, tmp_path / "demo" / "20261201-1130-s0" / "seed 0") == "demo-20261201-1130-s0-seed-0"
    assert artifact_name(cfg, tmp_path.parent / "elsewhere" / "r1") == "r1"


def test_only_numbers_are_logged():
    row = {"type": "round", "round": 3, "train_loss": 1.5, "clients_sampled": 4, "skipped": 0,
           "accountant": "rdp", "ok": True, "skip_reason": "x"}
    assert numeric(row) == {"train_loss": 1.5, "clients_sampled": 4.0, "skipped": 0.0}


def test_offline_wandb_sends_no_error_reports_unless_asked(monkeypatch):
    monkeypatch.setenv("WANDB_ERROR_REPORTING", "")   # so that teardown restores the original
    monkeypatch.delenv("WANDB_ERROR_REPORTING")
    check_available(from_dict({"tracking": {"backend": "wandb"}}))
    assert os.environ["WANDB_ERROR_REPORTING"] == "false"
    monkeypatch.setenv("WANDB_ERROR_REPORTING", "true")   # the user's own choice stays
    check_available(from_dict({"tracking": {"backend": "wandb"}}))
    assert os.environ["WANDB_ERROR_REPORTING"] == "true"
