"""fl_sim.export without TensorFlow: finding the run, reading weights, budgets, the table.

The conversion itself is covered end to end in tests/integration/test_export.py.
"""

import subprocess
import sys

import numpy as np
import pytest

from fl_sim.config import dumps_toml, from_dict
from fl_sim.export.formats import FORMATS, UNSUPPORTED
from fl_sim.export.report import BUDGETS, evaluate_budgets, summary_table
from fl_sim.export.runs import ExportError, load_weights, resolve_run_dir, sub_runs


def make_run(path, **experiment):
    path.mkdir(parents=True)
    cfg = from_dict({"experiment": {"name": "x", **experiment}})
    (path / "config.resolved.toml").write_text(dumps_toml(cfg))
    return path


def test_building_the_cli_does_not_import_tensorflow():
    # `fl-sim export --help` and its error paths must not wait for TensorFlow (a fresh
    # interpreter: other tests in this process may have imported it already).
    code = ("import sys, fl_sim.app.cli; fl_sim.app.cli.build_parser(); "
            "import fl_sim.export.pipeline; print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr[-2000:]


def test_experiment_folder_resolves_to_newest_finished_run(tmp_path):
    old = make_run(tmp_path / "x" / "20261101-000000-s0")
    new = make_run(tmp_path / "x" / "20261102-000000-s0")
    unfinished = make_run(tmp_path / "x" / "20261103-000000-s0")
    for d in (old, new):
        (d / "summary.json").write_text("{}")
    assert resolve_run_dir(new) == (new, None)
    picked, note = resolve_run_dir(tmp_path / "x")
    assert picked == new and str(new) in note
    assert unfinished.name not in note
    with pytest.raises(ExportError, match="no run directories inside"):
        resolve_run_dir(tmp_path)
    with pytest.raises(ExportError, match="no such run directory"):
        resolve_run_dir(tmp_path / "missing")


def test_comparison_run_lists_its_sub_runs_and_names_a_missing_one(tmp_path):
    run = make_run(tmp_path / "r", compare=["cifg", "si_cifg"])
    make_run(run / "cifg")
    with pytest.raises(ExportError, match="si_cifg: comparison sub-run missing"):
        sub_runs(run)
    make_run(run / "si_cifg")
    assert [n for n, _ in sub_runs(run)] == ["cifg", "si_cifg"]


def test_weights_files_round_trip_and_errors_name_the_file(tmp_path):
    run = make_run(tmp_path / "r")
    with pytest.raises(ExportError, match="final_weights.npz: not found"):
        load_weights(run)
    ws = [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(3, np.float32)]
    np.savez(run / "final_weights.npz", *ws)
    got, path, rnd = load_weights(run)
    assert rnd is None and path.name == "final_weights.npz"
    for a, b in zip(got, ws):
        np.testing.assert_array_equal(a, b)
    np.savez(run / "final_weights.npz", weights=ws[0])          # not arr_0..arr_N
    with pytest.raises(ExportError, match="not a readable weights file"):
        load_weights(run)
    from fl_sim import checkpoint

    checkpoint.save(run, 3, ws, {})
    got, path, rnd = load_weights(run, "round-00003.npz")       # found under checkpoints/
    assert rnd == 3 and path.parent.name == "checkpoints"
    (run / "checkpoints" / "round-00004.npz").write_bytes(b"garbage")
    with pytest.raises(ExportError, match="round-00004.npz: not a readable fl_sim checkpoint"):
        load_weights(run, "round-00004.npz")


def fake_report(acc):
    fm = {f: {"status": "ok", "tflite": {"accuracy": a, "top1_agreement": 1.0},
              "file_info": {"sparse": {"num_tensors": 0, "encoded_sparsity": 0.0}},
              "size_bytes": 1000, "latency": {"per_token_ms": 0.1}}
          for f, a in acc.items()}
    return {"formats": fm, "keras_pruned": {"accuracy": acc.get("sparse", 0.5)}, "training_model": None}


def test_budgets_flag_a_drop_beyond_the_documented_limit():
    rep = fake_report({"float32": 0.50, "float16": 0.495, "dynamic_int8": 0.48, "int8": 0.47,
                       "sparse": 0.40, "sparse_int8": 0.36})
    evaluate_budgets(rep)
    fm = rep["formats"]
    assert BUDGETS["dynamic_int8"] == ("float32", 0.01)
    assert fm["float16"]["budget"]["within_budget"] is True
    assert fm["dynamic_int8"]["budget"]["within_budget"] is False      # 2 points > 1
    assert fm["int8"]["budget"]["within_budget"] is True               # 3 points == budget
    assert fm["sparse_int8"]["budget"]["within_budget"] is False       # 4 points vs sparse
    assert fm["sparse_int8"]["budget"]["against"] == "sparse"


def test_summary_table_shows_unsupported_with_reason_and_over_budget():
    class Res:
        name = "si_transformer"
        report = fake_report({"float32": 0.5, "dynamic_int8": 0.45})

    Res.report["formats"]["int8"] = {"status": "unsupported",
                                     "reason": UNSUPPORTED[("si_transformer", "int8")]}
    evaluate_budgets(Res.report)
    text = summary_table([Res])
    assert "| si_transformer | int8 |" in text and "unsupported: the SI attention" in text
    assert "OVER BUDGET" in text
    assert set(f for _, f in UNSUPPORTED) <= set(FORMATS)


def test_a_multi_seed_run_exports_its_first_seed(tmp_path):
    from fl_sim.export.runs import ExportError, resolve_run_dir

    top = tmp_path / "demo" / "20261201-000000-s3_4"
    (top / "seed-3").mkdir(parents=True)
    (top / "config.resolved.toml").write_text("[experiment]\nname = \"demo\"\nseeds = [3, 4]\n")
    with pytest.raises(ExportError, match="the first seed's run is missing"):
        resolve_run_dir(top)
    (top / "seed-3" / "config.resolved.toml").write_text("[experiment]\nname = \"demo\"\nseed = 3\n")
    for given in (top, tmp_path / "demo"):                  # the run, or its experiment folder
        got, note = resolve_run_dir(given)
        assert got == top / "seed-3" and "exporting seed 3" in note
