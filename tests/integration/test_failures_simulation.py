"""Seeded client crashes in the simulation runtime (simulation.client_failure_rate).

The crashed clients are a pure function of (seed, round, client id), so the test predicts
exactly which of each round's sampled clients fail and checks the metrics against that.
"""

import json

from clients.faults import crashes
from fl_sim.config import load_experiment
from fl_sim.data import load_corpus
from fl_sim.sampling import sample_clients
from tests.integration.conftest import run_cli, run_dirs

RATE = 0.3
SETS = ["--set", "server.clients_per_round=10", "--set", "server.min_clients=3",
        "--set", f"simulation.client_failure_rate={RATE}", "--set", "simulation.num_workers=2"]


def expected_failures(cfg, rounds):
    corpus = load_corpus(cfg.data, cfg.experiment.seed)
    out = []
    for r in range(1, rounds + 1):
        cohort = sample_clients(corpus.train_client_ids, cfg.server.clients_per_round,
                                cfg.experiment.seed, r)
        out.append(sum(crashes(cfg.experiment.seed, r, cid, RATE) for cid in cohort))
    return out


def test_crashed_clients_are_counted_and_the_round_completes(tmp_path):
    # Prepare
    cfg = load_experiment("experiments/smoke.toml", [s for s in SETS if s != "--set"])
    want = expected_failures(cfg, 3)
    assert sum(want) > 0  # the seed really injects crashes (else the test proves nothing)

    # Execute
    proc = run_cli("run", "experiments/smoke.toml", "--rounds", 3, "--out", tmp_path, *SETS)

    # Assert
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_dir,) = run_dirs(tmp_path, "smoke")
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rounds = [r for r in rows if r["type"] == "round"]
    assert [r["round"] for r in rounds] == [1, 2, 3]
    assert [r["clients_failed"] for r in rounds] == want
    for r in rounds:
        assert r["clients_completed"] + r["clients_failed"] + r["clients_rejected"] == r["clients_sampled"] == 10
        assert "skip_reason" not in r


def test_below_min_clients_after_crashes_aborts_with_a_named_reason(tmp_path):
    proc = run_cli("run", "experiments/smoke.toml", "--rounds", 2, "--out", tmp_path, *SETS,
                   "--set", "server.min_clients=10", "--set", 'server.below_min_clients="abort"')
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (run_dir,) = run_dirs(tmp_path, "smoke")
    final = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert "server.min_clients = 10" in final["stopped_reason"]
    assert "below_min_clients = 'abort'" in final["stopped_reason"]
