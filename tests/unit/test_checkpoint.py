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


def _three_rounds(tmp_path, extra=None):
    w = [np.arange(6, dtype=np.float32).reshape(2, 3)]
    for r in (1, 2, 3):
        checkpoint.save(tmp_path, r, [x * r for x in w], {}, {"model": "cifg", **(extra or {})})
    return tmp_path / "checkpoints"


def test_truncated_newest_checkpoint_falls_back_to_the_older_one(tmp_path):
    ckpts = _three_rounds(tmp_path)
    newest = ckpts / "round-00003.npz"
    with open(newest, "r+b") as fh:  # what `truncate -s 4000` does to a bigger file
        fh.truncate(newest.stat().st_size // 2)
    with pytest.raises(checkpoint.CheckpointError, match="round-00003.npz"):
        checkpoint.load(newest)
    got, notes = checkpoint.resume_point(tmp_path, {1, 2, 3}, "cifg")
    assert got["round"] == 2
    assert "round-00003.npz" in notes[0] and "resuming from round-00002.npz" in notes[-1]


def test_bit_flip_is_caught_by_the_zip_crc(tmp_path):
    ckpts = _three_rounds(tmp_path)
    path = ckpts / "round-00003.npz"
    data = bytearray(path.read_bytes())
    i = data.index((np.arange(6, dtype=np.float32) * 3).tobytes())  # w_0's payload, stored raw
    data[i + 5] ^= 0x40  # one bit of one weight: the file still parses, only the CRC differs
    path.write_bytes(bytes(data))
    with pytest.raises(checkpoint.CheckpointError, match="round-00003.npz"):
        checkpoint.load(path)


def test_no_intact_checkpoint_left_is_an_error_naming_each_file(tmp_path):
    ckpts = _three_rounds(tmp_path)
    for p in ckpts.glob("round-*.npz"):
        p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(checkpoint.CheckpointError) as err:
        checkpoint.resume_point(tmp_path, {1, 2, 3})
    assert "round-00002.npz" in str(err.value) and "round-00003.npz" in str(err.value)
    assert "no intact checkpoint" in str(err.value)


def test_latest_json_and_metrics_gaps(tmp_path):
    ckpts = _three_rounds(tmp_path)
    (ckpts / "latest.json").write_text("{not json")
    got, notes = checkpoint.resume_point(tmp_path, {1, 2, 3})
    assert got["round"] == 3 and "latest.json" in notes[0]
    # metrics.jsonl lost round 3's row: round 3's checkpoint would leave a gap, round 2's not.
    got, notes = checkpoint.resume_point(tmp_path, {1, 2})
    assert got["round"] == 2 and any("no row for round 3" in n for n in notes)
    with pytest.raises(checkpoint.CheckpointError, match="no row for rounds 1, 2"):
        checkpoint.resume_point(tmp_path, set())
    (ckpts / "latest.json").unlink()
    for p in ckpts.glob("round-*.npz"):
        p.unlink()
    assert checkpoint.resume_point(tmp_path, set()) == (None, [])


def test_damaged_privacy_ledger_and_wrong_model(tmp_path):
    ledger = {"version": 1, "population": 20, "expected_cohort": 4, "sampling": "fixed",
              "delta": 1e-3, "rdp_orders": None, "pld_discretization": 1e-4,
              "segments": [[1.0, 3]]}
    _three_rounds(tmp_path, {"strategy": {"privacy_ledger": ledger}})
    assert checkpoint.resume_point(tmp_path, {1, 2, 3}, "cifg")[0]["round"] == 3
    with pytest.raises(checkpoint.CheckpointError, match="a checkpoint of model 'cifg'"):
        checkpoint.resume_point(tmp_path, {1, 2, 3}, "si_cifg")
    bad = {**ledger, "segments": [[float("nan"), 3]]}
    _three_rounds(tmp_path, {"strategy": {"privacy_ledger": bad}})
    with pytest.raises(checkpoint.CheckpointError, match="privacy ledger"):
        checkpoint.resume_point(tmp_path, {1, 2, 3})
    too_long = {**ledger, "segments": [[1.0, 9]]}
    _three_rounds(tmp_path, {"strategy": {"privacy_ledger": too_long}})
    with pytest.raises(checkpoint.CheckpointError, match="does not fit round"):
        checkpoint.resume_point(tmp_path, {1, 2, 3})
