"""A run whose clients diverge (client lr far too large) finishes and reports it, rather than
failing: a learning-rate sweep's top rates do this (client lr 3 on the demo's setting)."""

import json

from tests.integration.conftest import run_cli, run_dirs


def test_diverging_run_finishes_with_its_summary(tmp_path):
    res = run_cli("run", "experiments/smoke.toml", "--set", 'model.kind="cifg"',
                  "--set", "client.lr=1000.0", "--set", "experiment.rounds=3", "--out", tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (run,) = run_dirs(tmp_path, "smoke")
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval_loss" in r]
    # What makes this a diverged run: an evaluation loss no float32 TensorBoard scalar holds,
    # or clients whose updates the server rejected as non-finite.
    assert any(r["eval_loss"] > 3.4e38 or r["eval_perplexity"] > 3.4e38 for r in evals) or any(
        r.get("clients_rejected") for r in rows), rows
    assert (run / "summary.json").exists()
