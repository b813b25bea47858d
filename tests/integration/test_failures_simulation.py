"""Seeded client crashes in the simulation runtime (simulation.client_failure_rate).

The crashed clients are a pure function of (seed, round, client id), so the test predicts
exactly which of each round's sampled clients fail and checks the metrics against that.
"""

import json

from clients.faults import crashes
from fl_sim.config import load_experiment
from fl_sim.data import load_corpus
from fl_sim.sampling import sample_clients
from tests.integration.conftest import REPO, run_cli, run_dirs

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


def test_every_client_failing_aborts_a_private_run_instead_of_releasing_noise(tmp_path):
    # A broken setup fails every client (last session: workers that rejected the experiment
    # TOML). DP-FedAvg still releases noise on an empty sum each round, so without this a
    # sweep recorded 40 rounds of pure noise as a finished, "trained" point.
    proc = run_cli("run", "experiments/smoke.toml", "--rounds", 4, "--out", tmp_path,
                   "--set", "simulation.client_failure_rate=1.0", "--set", "server.max_failed_rounds=2",
                   "--set", "privacy.enabled=true", "--set", "privacy.noise_multiplier=1.0")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "server.max_failed_rounds = 2" in proc.stderr
    (run_dir,) = run_dirs(tmp_path, "smoke")
    final = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert final["type"] == "final" and final["stopped_reason"].startswith("aborted in round 2")
    assert final["rounds_completed"] == 1  # round 1 ran (one failed round is tolerated)
    diag = [json.loads(x) for x in (run_dir / "diagnostics.jsonl").read_text().splitlines()]
    assert [(d["round"], d["clients_completed"]) for d in diag if d.get("type") == "round"] == [(1, 0), (2, 0)]


def test_a_sweep_stops_at_an_aborted_point_and_leaves_it_out_of_its_table(tmp_path):
    sweep_file = tmp_path / "s.toml"
    sweep_file.write_text(
        '[sweep]\nname = "broken"\n'
        f'experiment = "{REPO / "experiments" / "smoke.toml"}"\n'
        'models = ["cifg"]\nnoise_multipliers = [1.0]\nnon_private_reference = false\n'
        'seeds = [0, 1]\nset = ["experiment.rounds=3", "server.eval_every=0", '
        '"simulation.client_failure_rate=1.0", "server.max_failed_rounds=1"]\n')
    res = run_cli("sweep", sweep_file, "--out", tmp_path / "out", timeout=600)
    assert res.returncode == 1, res.stdout[-3000:] + res.stderr[-3000:]
    assert "point cifg-z1-s0 aborted in round 1" in res.stderr
    assert "cifg-z1-s1" not in res.stdout  # the next point was not started
    (sweep_dir,) = (tmp_path / "out" / "broken").iterdir()
    assert not (sweep_dir / "sweep_results.csv").exists() or "cifg-z1-s0" not in (
        sweep_dir / "sweep_results.csv").read_text()
    again = run_cli("sweep", "--resume", sweep_dir, timeout=600)  # retried, not "done"
    assert again.returncode == 1 and "cifg-z1-s0: resuming" in again.stdout, again.stdout[-2000:]
