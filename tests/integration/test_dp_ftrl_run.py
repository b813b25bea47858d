"""DP-FTRL end to end on the smoke experiment: per-round epsilon against dp-accounting,
the tree columns, the statement naming REPLACE_SPECIAL, a kill mid-round in the second
tree resuming to exactly the uninterrupted run, and PLD refused with exit code 2.

smoke.toml has 20 training clients and 4 per round; with privacy.tree_restart_rounds = 3
the 6 rounds are two trees of 3, each drawing 12 distinct clients.
"""

import json

import dp_accounting
import pytest
from dp_accounting import NeighboringRelation

from fl_sim.privacy.release import is_released
from tests.integration.conftest import run_cli, run_dirs
from tests.integration.test_dp_release import files, listed
from tests.integration.test_dp_crash import assert_same_run, rows, run_killed
import tests.integration.test_dp_crash as crash

SMOKE = "experiments/smoke.toml"
ARGS = ["run", SMOKE, "--rounds", "6", "--set", "privacy.enabled=true",
        "--set", 'privacy.mechanism="dp_ftrl"', "--set", "privacy.noise_multiplier=1.0",
        "--set", "privacy.clip_norm=0.5", "--set", "privacy.tree_restart_rounds=3",
        "--set", "server.momentum=0.5"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    proc = run_cli(*ARGS, "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_dir,) = run_dirs(out, "smoke")
    return run_dir


def test_epsilon_tree_columns_and_statement(uninterrupted):
    rs = rows(uninterrupted / "metrics.jsonl")
    rounds = [r for r in rs if r["type"] == "round"]
    assert [(r["tree"], r["tree_step"]) for r in rounds] == [(0, 1), (0, 2), (0, 3),
                                                             (1, 1), (1, 2), (1, 3)]
    delta = rounds[0]["delta"]
    assert delta == pytest.approx(20 ** -1.1)
    for t, r in enumerate(rounds, start=1):
        full, rest = divmod(t, 3)
        acc = dp_accounting.rdp.RdpAccountant(
            neighboring_relation=NeighboringRelation.REPLACE_SPECIAL)
        for steps in [3] * full + ([rest] if rest else []):
            acc.compose(dp_accounting.SingleEpochTreeAggregationDpEvent(1.0, steps))
        assert r["epsilon_rdp"] == pytest.approx(acc.get_epsilon(delta), rel=1e-12)
        assert r["epsilon_pld"] is None and r["neighboring_relation"] == "REPLACE_SPECIAL"
        assert r["noise_std"] == 0.5 and r["mechanism"] == "dp_ftrl"
    statement = (uninterrupted / "privacy_statement.md").read_text()
    assert "DP-FTRL" in statement and "REPLACE_SPECIAL" in statement
    assert "R = 3 rounds" in statement and "2 trees" in statement
    summary = (uninterrupted / "summary.md").read_text()
    assert "neighbouring relation" in summary and "REPLACE_SPECIAL" in summary
    # Exact clipping counts are diagnostics, not released.
    diag = [json.loads(x) for x in (uninterrupted / "diagnostics.jsonl").read_text().splitlines()]
    assert all(d["non_private"] and "num_clipped" in d for d in diag if d["type"] == "round")
    assert not any("num_clipped" in r for r in rounds)
    assert all(is_released(k) for r in rs for k in r)
    # Every file of the run directory is in the statement's listing, none unclassified.
    marks = listed(statement)
    assert set(files(uninterrupted)) <= set(marks) and "unclassified" not in statement
    assert marks["checkpoints/latest.json"] == "not covered"


def test_killed_mid_round_in_the_second_tree_resumes_exactly(uninterrupted, tmp_path,
                                                             monkeypatch):
    # Round 5 is step 2 of tree 1: the resume needs the tree's anchor, prefix sum and
    # momentum from round 4's checkpoint, and redraws the very same node noise.
    monkeypatch.setattr(crash, "ARGS", ARGS)
    run_dir = run_killed(tmp_path, "aggregated:5", tmp_path / "log.txt")
    assert [r["round"] for r in rows(run_dir / "metrics.jsonl")] == [1, 2, 3, 4]
    again = run_cli("run", "--resume", run_dir)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resuming after round 4" in again.stdout and "round   5/6" in again.stdout
    assert_same_run(run_dir, uninterrupted)


def test_pld_is_refused_with_exit_2(tmp_path):
    proc = run_cli(*ARGS, "--out", tmp_path, "--set", 'privacy.accountant="pld"')
    assert proc.returncode == 2
    assert "privacy.mechanism = 'dp_ftrl'" in proc.stderr and "privacy.accountant" in proc.stderr
    assert not run_dirs(tmp_path, "smoke")
