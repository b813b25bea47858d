import json

import numpy as np
import pytest

from fl_sim import checkpoint
from fl_sim.results import MetricsLog


def test_save_load_latest_and_keep(tmp_path):
    w = [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(2, np.float32)]
    for r in (1, 2, 3):
        checkpoint.save(tmp_path, r, [x * r for x in w], {"velocity_0": np.full(2, r)}, {"model": "cifg"})
    got = checkpoint.load_latest(tmp_path)
    assert got["round"] == 3 and got["extra"] == {"model": "cifg"}
    np.testing.assert_array_equal(got["weights"][0], w[0] * 3)
    np.testing.assert_array_equal(got["optimizer_state"]["velocity_0"], [3, 3])
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("round-*.npz")) == \
        ["round-00002.npz", "round-00003.npz"]
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))


def test_missing_and_corrupt_checkpoints_raise_clear_errors(tmp_path):
    assert checkpoint.load_latest(tmp_path) is None
    checkpoint.save(tmp_path, 1, [np.zeros(1)], {})
    (tmp_path / "checkpoints" / "round-00001.npz").write_bytes(b"garbage")
    with pytest.raises(checkpoint.CheckpointError, match="round-00001.npz"):
        checkpoint.load_latest(tmp_path)
    (tmp_path / "checkpoints" / "latest.json").write_text(json.dumps({"round": 9, "file": "round-00009.npz"}))
    with pytest.raises(checkpoint.CheckpointError, match="does not exist"):
        checkpoint.load_latest(tmp_path)


def test_metrics_log_appends_and_truncates_for_resume(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    for r in (1, 2, 3):
        log.append({"type": "round", "round": r})
    with open(log.path, "a") as fh:
        fh.write('{"type": "round", "rou')  # torn last line of a killed run
    assert [x["round"] for x in log.rows()] == [1, 2, 3]
    log.keep_rounds_upto(2)
    assert [x["round"] for x in log.rows()] == [1, 2]
