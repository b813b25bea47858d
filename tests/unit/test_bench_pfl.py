"""benchmarks/bench_pfl.py's pieces that need no pfl venv: the exported job, the pfl-side
model's size, the pfl runner's usage errors and ``make bench``'s choice of benchmarks.

The one check that needs ``.venv-pfl`` (the tf_keras model computes fl_sim's function on
fl_sim's weights) is marked ``pfl_venv``: `make test-pfl` builds the venv and runs it, and
it fails, naming that command, when the venv is absent. The benchmark itself (minutes) is
never part of the tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from benchmarks import pfl_model, pfl_run, run_all
from benchmarks.common import REPO
from benchmarks.pfl_export import export_job, load_job
from fl_sim.config import ModelConfig, load_experiment
from fl_sim.data import load_corpus
from fl_sim.models import build_model
from fl_sim.sampling import sample_clients

PFL_PY = REPO / ".venv-pfl" / "bin" / "python"


@pytest.mark.parametrize("kind,vocab,emb,hidden,proj", [
    ("si_cifg", 5004, 64, 128, 64),   # the benchmark model
    ("cifg", 37, 8, 12, 0),           # no projection: h is the cell output
    ("cifg", 50, 6, 10, 4),
])
def test_param_count_equals_fl_sims_model(kind, vocab, emb, hidden, proj):
    model = build_model(ModelConfig(kind=kind, embedding_dim=emb, hidden_dim=hidden, projection_dim=proj),
                        vocab, seq_len=5, seed=0)
    assert pfl_model.param_count(vocab, emb, hidden, proj) == model.count_params()


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    from benchmarks import bench_pfl

    cfg = load_experiment(bench_pfl.EXPERIMENT, [*bench_pfl.OVERRIDES, "server.clients_per_round=4"])
    path = tmp_path_factory.mktemp("pfl") / "job.npz"
    meta = export_job(cfg, 3, path)
    return cfg, meta, load_job(path)


def test_export_round_trips_fl_sims_clients_cohorts_and_weights(job):
    cfg, meta, got = job
    corpus = load_corpus(cfg.data, cfg.experiment.seed)
    assert got["client_ids"] == list(corpus.train_client_ids)
    for cid in corpus.train_client_ids:
        want = corpus.client_train(cid)
        assert got["clients"][cid].dtype == np.int32
        np.testing.assert_array_equal(got["clients"][cid], want, err_msg=cid)
    assert got["cohorts"] == [sample_clients(corpus.train_client_ids, 4, cfg.experiment.seed, r)
                              for r in (1, 2, 3)]
    model = build_model(cfg.model, corpus.vocab.size, corpus.seq_len, seed=cfg.experiment.seed)
    assert got["weight_names"] == [v.path for v in model.trainable_variables]
    for w, v in zip(got["weights"], model.trainable_variables, strict=True):
        np.testing.assert_array_equal(w, v.numpy())
    # Same model, same weights, same process: the reference logits are reproduced exactly
    # up to float32 kernel rounding (1e-5 is ~100x what a rerun of one forward pass moves).
    np.testing.assert_allclose(model(got["ref_tokens"], training=False).numpy(), got["ref_logits"],
                               atol=1e-5)
    assert meta["parameters"] == model.count_params() == pfl_model.param_count(
        meta["vocab_size"], meta["embedding_dim"], meta["hidden_dim"], meta["projection_dim"])
    assert (meta["kind"], meta["cohort"], meta["rounds"], meta["batch_size"]) == ("si_cifg", 4, 3, 16)


def test_pfl_side_modules_import_without_pfl():
    # fl_sim's venv has neither pfl nor tf_keras: both files must still import (the runner
    # imports them lazily), which is what lets this test and the benchmark parent load them.
    for name in ("tf_keras", "pfl"):
        if name in sys.modules:
            pytest.fail(f"{name} is imported in fl_sim's process")
    assert callable(pfl_model.build_model) and callable(pfl_run.main)


def test_pfl_runner_usage_errors(tmp_path, capsys):
    assert pfl_run.main([str(tmp_path / "missing.npz")]) == 2
    assert "missing.npz not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        pfl_run.main([])
    assert e.value.code == 2


def test_importing_the_pfl_runner_leaves_the_environment_alone():
    # It once set TF_USE_LEGACY_KERAS at import; every later subprocess of the test session
    # inherited it and the TF 2.15 reference venv (no tf_keras) could not import TensorFlow
    # Privacy, failing 20 cross-check tests in CI. A subprocess so that this process's own
    # imports and environment cannot hide it.
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    code = ("import os, benchmarks.pfl_run as r; "
            "assert r.main(['/nonexistent.npz']) == 2; "
            "print(os.environ.get('TF_USE_LEGACY_KERAS'))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "None"


def test_make_bench_runs_pfl_only_with_its_venv(tmp_path):
    present, absent = tmp_path / "python", tmp_path / "nothing"
    present.touch()
    names, notes = run_all.default_benchmarks({"bench_pfl": (present, "why")})
    assert names[-1] == "bench_pfl" and notes == []
    names, notes = run_all.default_benchmarks({"bench_pfl": (absent, "why")})
    assert "bench_pfl" not in names and notes == ["why"]
    assert "make bench-pfl" in run_all.OPTIONAL["bench_pfl"][1]


# Needs .venv-pfl (2.4 GB, built only for the benchmark): its own marker, outside make test
# and make test-slow; `make test-pfl` builds the venv and runs it. No skip: a missing venv
# fails with the command that builds it.
@pytest.mark.pfl_venv
def test_pfl_model_computes_fl_sims_function(job, tmp_path):
    assert PFL_PY.exists(), f"{PFL_PY} is absent: `make test-pfl` builds it (scripts/make_pfl_venv.sh)"
    cfg, meta, got = job
    path = tmp_path / "job.npz"
    export_job(cfg, 1, path)
    code = ("import json, sys, os; os.environ['TF_USE_LEGACY_KERAS'] = '1'; import numpy as np; "
            "from benchmarks.pfl_export import load_job; from benchmarks.pfl_model import build_model; "
            "j = load_job(sys.argv[1]); m = j['meta']; "
            "k = build_model(m['vocab_size'], m['seq_len'], m['embedding_dim'], m['hidden_dim'], "
            "m['projection_dim'], m['kind'] == 'si_cifg'); k.set_weights(j['weights']); "
            "d = float(np.max(np.abs(k(j['ref_tokens']).numpy() - j['ref_logits']))); "
            "print(json.dumps({'params': int(k.count_params()), 'diff': d}))")
    proc = subprocess.run([str(PFL_PY), "-c", code, str(path)], cwd=REPO, capture_output=True, text=True,
                          timeout=900, env={"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3",
                                            "CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["params"] == meta["parameters"]
    # Same TF 2.21 kernels on both sides, same weights and ops: float32 rounding only
    # (measured 0.0 on this machine); 1e-4 would flag a different equation, not noise.
    assert out["diff"] < 1e-4


def _sim(rounds, cpu, wall):
    return {"round_times_s": rounds, "round_cpu_s": cpu, "process_wall_s": wall,
            "final_round_with_eval_s": 1.0, "loadavg_before": [2.0], "loadavg_after": [3.0]}


def _pfl(rounds, cpu, local, local_cpu, wall):
    return {"round_times_s": rounds, "round_cpu_s": cpu, "local_train_s": local,
            "local_train_cpu_s": local_cpu, "process_wall_s": wall, "startup_s": 4.0,
            "parameters": 10, "ref_logits_max_abs_diff": 0.0, "weights_moved": True,
            "steps_per_round": [32, 32, 32], "versions": {"pfl": "0.6.0"}, "tf_threads": "default",
            "loadavg_before": [3.0], "loadavg_after": [4.0]}


def test_summary_ratios_use_steady_rounds_and_show_in_the_table():
    from benchmarks import bench_pfl, report

    # Round 1 is warm-up on both sides; sim's round_cpu_s already starts at round 2 (cases.py).
    sims = [_sim([50.0, 2.0, 4.0], [1.0, 2.0], 31.0), _sim([60.0, 4.0, 6.0], [3.0, 2.0], 41.0)]
    pfls = [_pfl([9.0, 4.0, 4.0], [8.0, 2.0, 2.0], [8.0, 3.5, 3.5], [7.0, 1.9, 1.9], 20.0)]
    pure = {"round_times_s": [9.0, 1.5, 1.5], "round_cpu_s": [9.0, 1.4, 1.6], "loadavg_after": [1.0]}
    p = bench_pfl.summarize({"parameters": 10}, sims, pfls, pure, ["fl_sim", "pfl", "fl_sim", "fl_sim pure"])
    assert p["fl_sim_round_s"] == [3.0, 5.0] and p["fl_sim_over_pfl_round"] == 1.0   # 8 s / 8 s
    assert p["fl_sim_over_pfl_round_cpu"] == 1.0                                       # 4 / 4
    assert p["fl_sim_over_pfl_end_to_end"] == 1.75 and p["met"] and p["complete"]       # 35 s / 20 s
    assert p["breakdown"]["fl_sim_rest_cpu_s"] == [0.6, 0.4] and p["problems"] == []
    rows = report._pfl_rows(p, {})
    assert rows[0].startswith("| vs pfl-research 0.6.0, cohort 10: fl_sim / pfl time per round (rounds 2..")
    assert "| 1.00 (4.00 vs 4.00 s) | <= 1.0 | met |" in rows[0]
    assert "1.50 + 0.50; 1.90 + 0.10" in rows[3]
    # A run stopped before its pure case still summarises (and the table shows nan for it).
    q = bench_pfl.summarize({"parameters": 10}, sims[:1], pfls, None, ["fl_sim", "pfl", "fl_sim pure"])
    assert not q["complete"] and q["breakdown"]["fl_sim_local_cpu_s"] is None
    assert "nan + nan" in report._pfl_rows(q, {})[3]
