"""DP-FedAvg end to end: epsilon per round, privacy statement, budget stop, resume keeps epsilon."""

import json

from fl_sim.privacy import PrivacyLedger
from tests.integration.conftest import run_cli, run_dirs

DP = ["--set", "privacy.enabled=true", "--set", "privacy.noise_multiplier=1.0",
      "--set", "privacy.clip_norm=0.5", "--set", 'privacy.sampling="poisson"']


def rows(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_dp_run_budget_stop_and_resume(tmp_path):
    # Population of smoke.toml: 24 synthetic clients, 4 held out -> 20 train; 4 per round.
    ledger = PrivacyLedger(20, 4, "poisson")
    eps = []
    for _ in range(4):
        ledger.record_round(1.0)
        eps.append(ledger.epsilon("rdp"))
    budget = (eps[1] + eps[2]) / 2  # allows 2 rounds, not 3

    proc = run_cli("run", "experiments/smoke.toml", "--rounds", 4, "--out", tmp_path, *DP,
                   "--set", f"privacy.max_epsilon={budget}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_dir,) = run_dirs(tmp_path, "smoke")
    rs = rows(run_dir)
    rounds = [r for r in rs if r["type"] == "round"]
    assert [r["round"] for r in rounds] == [1, 2]
    for r, e in zip(rounds, eps):
        assert abs(r["epsilon_rdp"] - e) <= 1e-6 * e
        assert r["epsilon_pld"] is not None and r["noise_multiplier"] == 1.0
    final = rs[-1]
    assert final["type"] == "final" and "privacy.max_epsilon" in final["stopped_reason"]
    statement = (run_dir / "privacy_statement.md").read_text()
    assert "Poisson" in statement and "20" in statement
    assert "stopping before round 3" in proc.stdout

    # A finished run (here stopped by its budget) is complete: a resume changes nothing.
    metrics_before = (run_dir / "metrics.jsonl").read_bytes()
    summary_before = (run_dir / "summary.json").read_bytes()
    again = run_cli("run", "--resume", run_dir)
    assert again.returncode == 0 and "already complete" in again.stdout, again.stdout + again.stderr
    assert (run_dir / "metrics.jsonl").read_bytes() == metrics_before
    assert (run_dir / "summary.json").read_bytes() == summary_before

    # Killed after round 2's checkpoint, before the final row: the resume restores the
    # ledger from the checkpoint, so it must stop again before round 3 with the same epsilon.
    (run_dir / "metrics.jsonl").write_text("".join(
        line for line in metrics_before.decode().splitlines(True) if '"type": "final"' not in line))
    (run_dir / "summary.json").unlink()
    again = run_cli("run", "--resume", run_dir)
    assert again.returncode == 0, again.stdout + again.stderr
    rs2 = rows(run_dir)
    assert [r["round"] for r in rs2 if r["type"] == "round"] == [1, 2]
    assert rs2[-1]["epsilon_rdp"] == final["epsilon_rdp"]
    assert "stopping before round 3" in again.stdout


def test_impossible_dp_settings_exit_2(tmp_path):
    proc = run_cli("run", "experiments/smoke.toml", "--out", tmp_path, *DP,
                   "--set", "server.clients_per_round=50", "--set", "server.min_clients=1")
    assert proc.returncode == 2 and "exceeds" in proc.stderr
