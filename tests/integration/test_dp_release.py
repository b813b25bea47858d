"""What a DP run releases (issue 15): every file of the run directory and of its export is
listed in privacy_statement.md as covered or not covered; exact diagnostics stay out of
metrics.jsonl and TensorBoard; the default vocabulary and the int8 calibration come from the
held-out (public) clients, never from the training clients' raw counts."""

import json
from collections import Counter
from pathlib import Path

import pytest

from fl_sim.config import load_experiment
from fl_sim.data import load_corpus
from fl_sim.data.vocab import build_vocab
from fl_sim.privacy.release import DIAGNOSTIC_EXAMPLES, LISTING_HEADER, is_released
from tests.integration.conftest import run_cli, run_dirs

SMOKE = "experiments/smoke.toml"
DP = ["--set", "privacy.enabled=true", "--set", "privacy.noise_multiplier=1.0",
      "--set", "privacy.adaptive_clipping=true", "--set", "privacy.clipped_count_stddev=1.0"]


def listed(statement: str) -> dict[str, str]:
    """`path` -> 'covered' / 'not covered' from the statement's file-by-file listing."""
    out = {}
    for line in statement.split(LISTING_HEADER, 1)[1].splitlines():
        if line.startswith("- `"):
            path, rest = line[3:].split("`", 1)
            out[path] = "not covered" if rest.startswith(": **not covered**") else "covered"
    return out


def files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def dp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dp_release")
    proc = run_cli("run", SMOKE, "--rounds", 2, "--out", out, *DP)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_dir,) = run_dirs(out, "smoke")
    exp_out = out / "exported"
    x = run_cli("export", run_dir, "--formats", "float32,int8", "--out", exp_out,
                "--latency-runs", "2", "--eval-sequences", "50", "--no-xnnpack",
                "--no-training-model")
    assert x.returncode == 0, x.stdout[-3000:] + x.stderr[-3000:]
    return run_dir, exp_out


def test_statement_lists_every_released_file(dp_run):
    run_dir, exp_out = dp_run
    text = (run_dir / "privacy_statement.md").read_text()
    marks = listed(text)
    # Every file of both directories is listed, and nothing is "unclassified"
    for f in files(run_dir):
        assert f in marks, f"{f} not in the statement"
    for f in files(exp_out):
        assert f in marks, f"export file {f} not in the statement"
    assert "unclassified" not in text
    assert marks["checkpoints/latest.json"] == "not covered"
    assert marks["diagnostics.jsonl"] == "not covered"
    # reproducible (simulation default): the seed files are marked, and the statement says so
    assert marks["manifest.json"] == "not covered" and "Noise: reproducible" in text
    for f in ("metrics.jsonl", "final_weights.npz", "summary.json", "privacy_statement.md",
              "plots/learning_curves.png", "vocab.txt", "model_float32.tflite", "model_int8.tflite",
              "metadata.json", "report.json"):
        assert marks[f] == "covered", f
    assert "Vocabulary: public" in text and "Diagnostics: not covered" in text


def test_diagnostics_stay_out_of_metrics_and_tensorboard(dp_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, _ = dp_run
    released = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    diag = [json.loads(x) for x in (run_dir / "diagnostics.jsonl").read_text().splitlines()]
    assert [r["type"] for r in released] == [r["type"] for r in diag] == ["round", "round", "final"]
    for r in released:
        assert all(is_released(k) for k in r), r
        assert not set(r) & set(DIAGNOSTIC_EXAMPLES)
    assert {"eval_accuracy", "epsilon_rdp", "clip_norm", "noisy_unclipped_fraction"} <= set(released[0])
    for d in diag[:2]:
        assert d["non_private"] is True
        assert {"train_loss", "train_examples", "num_clipped", "clients_completed"} <= set(d)
    assert "wall_time_s" in diag[2] and "wall_time_s" not in released[2]
    (events,) = (run_dir / "tensorboard").glob("events.out.tfevents.*")
    acc = EventAccumulator(str(events), size_guidance={"tensors": 0})
    acc.Reload()
    tags = set(acc.Tags()["tensors"]) | set(acc.Tags()["scalars"])
    assert "epsilon_rdp" in tags and "eval_accuracy" in tags
    assert not tags & set(DIAGNOSTIC_EXAMPLES), tags & set(DIAGNOSTIC_EXAMPLES)


def test_export_releases_nothing_from_private_raw_counts(dp_run):
    run_dir, exp_out = dp_run
    cfg = load_experiment(run_dir / "config.resolved.toml")
    assert cfg.data.vocab_source == "public"  # the DP default ("auto")
    corpus = load_corpus(cfg.data, cfg.experiment.seed)
    words = [w.strip() for w in (exp_out / "vocab.txt").read_text().splitlines()]
    assert words == corpus.vocab.words
    from fl_sim.data.corpus import make_source

    # The vocabulary built directly from the held-out clients' words (every unit: smoke
    # keeps all of them), and, to show the check can fail, from the training clients' words
    source = make_source(cfg.data, cfg.experiment.seed)
    held_out, train = Counter(), Counter()
    for cid in corpus.eval_client_ids:
        for unit in source.client_units(cid):
            held_out.update(unit[:cfg.data.seq_len])
    for cid in corpus.train_client_ids:
        for unit in source.client_units(cid):
            train.update(unit[:cfg.data.seq_len])
    assert build_vocab(dict(held_out), cfg.data.vocab_size).words == words
    assert build_vocab(dict(train), cfg.data.vocab_size).words != words  # so the check means something
    meta = json.loads((exp_out / "metadata.json").read_text())
    report = json.loads((exp_out / "report.json").read_text())
    assert meta["privacy"]["vocab_covered"] and meta["privacy"]["calibrated_files_covered"]
    assert set(report["calibration"]["clients"]) <= set(corpus.eval_client_ids)
    assert report["calibration"]["source"].startswith("held-out")
