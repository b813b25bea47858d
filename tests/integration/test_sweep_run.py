"""`fl-sim sweep` end to end on the smoke experiment: points x seeds, means over seeds, resume."""

import csv
import json

from tests.integration.conftest import REPO, run_cli


def test_sweep_with_seeds_runs_every_point_averages_and_resumes(tmp_path):
    sweep_file = tmp_path / "s.toml"
    sweep_file.write_text(
        '[sweep]\nname = "tiny"\n'
        f'experiment = "{REPO / "experiments" / "smoke.toml"}"\n'
        'models = ["si_cifg"]\nnoise_multipliers = [1.0]\nseeds = [0, 1]\n'
        'set = ["experiment.rounds=2", "server.eval_every=0"]\n')
    res = run_cli("sweep", sweep_file, "--out", tmp_path / "out", timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (sweep_dir,) = (tmp_path / "out" / "tiny").iterdir()

    with open(sweep_dir / "sweep_results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["point"], r["seed"]) for r in rows] == [
        ("si_cifg-nonprivate-s0", "0"), ("si_cifg-nonprivate-s1", "1"),
        ("si_cifg-z1-s0", "0"), ("si_cifg-z1-s1", "1")]
    # The seed changes the run (sampling, init, noise) but not the privacy accounting.
    assert rows[0]["accuracy"] != rows[1]["accuracy"] or rows[0]["perplexity"] != rows[1]["perplexity"]
    assert rows[2]["epsilon_rdp"] == rows[3]["epsilon_rdp"] != ""

    means = [json.loads(x) for x in (sweep_dir / "sweep_means.jsonl").read_text().splitlines()]
    assert [(m["private"], m["n"]) for m in means] == [(False, 2), (True, 2)]
    for m, pair in zip(means, (rows[:2], rows[2:])):
        assert abs(m["perplexity"] - sum(float(r["perplexity"]) for r in pair) / 2) < 1e-9
    assert " ± " in (sweep_dir / "sweep_results.md").read_text()
    assert (sweep_dir / "frontier.png").stat().st_size > 0

    again = run_cli("sweep", "--resume", sweep_dir, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert again.stdout.count("done, skipped") == 4

    # --models runs a subset (one model per process or machine) into the same directory.
    subset = run_cli("sweep", "--resume", sweep_dir, "--models", "si_cifg", timeout=300)
    assert subset.returncode == 0 and subset.stdout.count("done, skipped") == 4, subset.stdout[-2000:]
    bad = run_cli("sweep", "--resume", sweep_dir, "--models", "cifg", timeout=120)
    assert bad.returncode == 2 and "--models 'cifg'" in bad.stderr + bad.stdout
