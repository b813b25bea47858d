"""`fl-sim export` end to end: tiny federated runs of all four model kinds, then the TFLite
bundle checked through the LiteRT interpreter (ai-edge-litert), independently of the report
where it matters (float32 parity, the streaming step, on-device training).

Sizes are tiny (via --set) so the whole file runs in a few minutes on 2 CPU cores: one
comparison run trains cifg, si_cifg, transformer and si_transformer in one Flower
simulation, and one small pruned cifg run checks federated pruning -> sparse file.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.integration.conftest import run_cli, run_dirs

KINDS = ("cifg", "si_cifg", "transformer", "si_transformer")
RECURRENT = ("cifg", "si_cifg")
TINY_MODEL = ["--set", "model.embedding_dim=32", "--set", "model.hidden_dim=64",
              "--set", "model.projection_dim=32", "--set", "model.num_layers=1",
              "--set", "model.num_heads=2", "--set", "model.ff_dim=64"]
FAST_EXPORT = ["--latency-runs", "5", "--eval-sequences", "100", "--no-xnnpack"]

# Accuracy budgets the test enforces (absolute next-word accuracy, interpreter vs interpreter;
# they are fl_sim.export.report.BUDGETS, restated here so a loosened budget fails this test).
# int4's (0.02) is checked on the trained demo model only (the slow test at the end): on
# these 4-round tiny models its drop is dominated by near-ties that 16 weight levels flip
# (measured 0.023 and 0.047 on the tiny SI-Transformer, 0.000 on the demo SI-CIFG).
BUDGET = {"float16": 0.01, "dynamic_int8": 0.01, "int8": 0.03, "sparse_int8": 0.03}


@pytest.fixture(scope="module")
def four_kinds(tmp_path_factory):
    out = tmp_path_factory.mktemp("export_runs")
    r = run_cli("run", "experiments/smoke.toml", "--out", out, "--rounds", 4,
                "--set", 'experiment.compare=["cifg","si_cifg","transformer","si_transformer"]',
                *TINY_MODEL)
    assert r.returncode == 0, r.stderr[-3000:]
    (run_dir,) = run_dirs(out, "smoke")
    # Export through the experiment folder: the newest finished run is picked.
    x = run_cli("export", out / "smoke", *FAST_EXPORT)
    return run_dir, x


def report(run_dir: Path, kind: str) -> dict:
    return json.loads((run_dir / kind / "export" / "report.json").read_text())


def keras_model(sub_dir: Path):
    from fl_sim.config import load_experiment
    from fl_sim.data import load_corpus
    from fl_sim.models import build_model

    cfg = load_experiment(sub_dir / "config.resolved.toml")
    corpus = load_corpus(cfg.data, cfg.experiment.seed)
    model = build_model(cfg.model, corpus.vocab.size, corpus.seq_len, seed=cfg.experiment.seed)
    with np.load(sub_dir / "final_weights.npz") as data:
        for i, v in enumerate(model.trainable_variables):
            v.assign(data[f"arr_{i}"])
    return cfg, corpus, model


def interpreter(path: Path):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    return Interpreter(model_path=str(path),
                       experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)


# --------------------------------------------------------------------------- the command


def test_export_writes_every_bundle_and_reports_unsupported_combinations(four_kinds):
    run_dir, x = four_kinds
    # Exit 0: the only formats that did not export were not named with --formats.
    assert x.returncode == 0, x.stderr[-3000:]
    assert f"exporting its newest run {run_dir}" in x.stdout
    assert "| model | format | size |" in x.stdout           # the printed table
    for kind in KINDS:
        exp = run_dir / kind / "export"
        rep = report(run_dir, kind)
        meta = json.loads((exp / "metadata.json").read_text())
        assert meta["model_kind"] == kind and meta["vocab_size"] == len((exp / "vocab.txt").read_text().split("\n")) - 1
        for name, f in meta["files"].items():                   # sha256 of every file
            import hashlib
            assert hashlib.sha256((exp / name).read_bytes()).hexdigest() == f["sha256"], name
        ok = {f for f, e in rep["formats"].items() if e["status"] == "ok"}
        expected = {"float32", "float16", "dynamic_int8", "int4", "sparse"} | (
            set() if kind == "si_transformer" else {"int8", "sparse_int8"})
        assert ok == expected, rep["formats"]
        assert all((exp / f"model_{f}.tflite").is_file() for f in ok)
        assert rep["training_model"]["status"] == "ok"
    rep = report(run_dir, "si_transformer")
    for fmt in ("int8", "sparse_int8"):
        assert rep["formats"][fmt]["status"] == "unsupported"
        assert "DIV" in rep["formats"][fmt]["reason"]
    assert "unsupported for si_transformer" in (run_dir / "si_transformer" / "export" / "report.md").read_text()
    assert (run_dir / "export" / "report.md").is_file()         # the combined table


@pytest.mark.parametrize("kind", KINDS)
def test_float32_file_matches_keras_through_the_interpreter(four_kinds, kind):
    # Prepare: the Keras model from the run's own config and final weights
    run_dir, _ = four_kinds
    cfg, corpus, model = keras_model(run_dir / kind)
    seqs = corpus.eval_sequences(16)[:, :-1]
    expected = np.asarray(model(seqs, training=False))           # [N, T, V]
    interp = interpreter(run_dir / kind / "export" / "model_float32.tflite")
    # Execute: the whole-sequence signature
    seq = interp.get_signature_runner("sequence")
    got = np.stack([seq(tokens=s[None])["logits"][0] for s in seqs])
    # Assert: tight tolerance (float32 rounding only)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    assert (got.argmax(-1) == expected.argmax(-1)).mean() == 1.0


@pytest.mark.parametrize("kind", RECURRENT)
def test_streaming_step_signature_reproduces_the_sequence_model(four_kinds, kind):
    run_dir, _ = four_kinds
    cfg, corpus, model = keras_model(run_dir / kind)
    cell = model.get_layer("cifg").cell
    V = corpus.vocab.size
    interp = interpreter(run_dir / kind / "export" / "model_float32.tflite")
    step = interp.get_signature_runner("step")
    # (token, state) -> (logits, new state), batch 1
    ins = {k: (list(d["shape"]), np.dtype(d["dtype"]).name) for k, d in step.get_input_details().items()}
    outs = {k: list(d["shape"]) for k, d in step.get_output_details().items()}
    assert ins == {"token": ([1], "int32"), "h": ([1, cell.out_dim], "float32"),
                   "c": ([1, cell.units], "float32")}
    assert outs == {"logits": [1, V], "h": [1, cell.out_dim], "c": [1, cell.units]}
    # One token per call, carrying the state, gives the sequence model's logits at every t.
    for s in corpus.eval_sequences(4)[:, :-1]:
        expected = np.asarray(model(s[None], training=False))[0]
        h = np.zeros((1, cell.out_dim), np.float32)
        c = np.zeros((1, cell.units), np.float32)
        for t, token in enumerate(s):
            out = step(token=np.array([token], np.int32), h=h, c=c)
            h, c = out["h"], out["c"]
            np.testing.assert_allclose(out["logits"][0], expected[t], rtol=0, atol=1e-4)
    meta = json.loads((run_dir / kind / "export" / "metadata.json").read_text())
    assert meta["state"] == {"h": [1, cell.out_dim], "c": [1, cell.units], "initial": "zeros"}


# Agreement of float16 / dynamic-int8 files with Keras, robust to the CPU's float kernels.
# Plain top-1 agreement of a 4-round smoke model depends on near-ties whose winner is
# decided by the last float bits (0.982 on an Intel Xeon, 0.979 on an AMD EPYC for the same
# SI-Transformer file), so it is reported but not asserted. Asserted instead:
# - top1_agreement_clear >= 0.99: agreement at targets whose float32 margin exceeds twice the
#   99.9th percentile of the file's own |logit error| (fl_sim.export.parity.agreement_summary:
#   where every logit moves by at most e, a margin above 2e cannot flip, so anything below
#   1.0 here is a heavy error tail, i.e. a conversion problem); measured 1.0000 for every
#   kind and format on both CPUs;
# - clear_fraction >= 0.5, so the check covers most targets (measured 0.85-1.00);
# - max |logit error| relative to the std of the Keras logits: float16 rounds weights to an
#   11-bit mantissa (relative 2^-11 = 4.9e-4 per weight), measured <= 1e-3, bound 1e-2;
#   per-channel int8 weights have a relative step of 1/127, measured <= 0.05, bound 0.15.
#   Both ratios depend on the weights' quantization, not on which kernel rounds last.
REL_LOGIT_ERROR = {"float16": 1e-2, "dynamic_int8": 0.15}


@pytest.mark.parametrize("kind", KINDS)
def test_quantized_formats_agree_and_stay_within_budget(four_kinds, kind):
    rep = report(four_kinds[0], kind)
    fm = rep["formats"]
    base = fm["float32"]["tflite"]["accuracy"]
    print(f"{kind}: float32 Keras logits sha256 {rep['keras']['logits_sha256']}")
    for fmt, rel in REL_LOGIT_ERROR.items():
        t = fm[fmt]["tflite"]
        assert t["top1_agreement_clear"] >= 0.99, (fmt, t)
        assert t["clear_fraction"] >= 0.5, (fmt, t)
        assert t["max_abs_logit_diff"] <= rel * rep["keras"]["logits_std"], (fmt, t, rep["keras"]["logits_std"])
    for fmt, budget in BUDGET.items():
        if fm[fmt]["status"] != "ok":
            continue
        against = fm["sparse"] if fmt == "sparse_int8" else fm["float32"]
        drop = against["tflite"]["accuracy"] - fm[fmt]["tflite"]["accuracy"]
        assert drop <= budget, f"{kind} {fmt}: accuracy drop {drop:.4f} > budget {budget}"
        assert fm[fmt]["budget"]["within_budget"] is True
    assert fm["float32"]["tflite"]["accuracy"] == pytest.approx(rep["keras"]["accuracy"], abs=1e-9)
    assert base > 0


def test_logit_hashes_are_logged(four_kinds):
    """One line per kind with the hash of its float32 Keras logits: run under other kernel
    settings (make test-kernels), the hashes show that the floats really moved. The lines go to
    FL_SIM_LOGIT_HASH_LOG when set (append), and to stdout."""
    import os

    lines = [f"{kind} {report(four_kinds[0], kind)['keras']['logits_sha256']}" for kind in KINDS]
    assert all(len(line.split()[1]) == 64 for line in lines)
    print("\n".join(lines))
    if path := os.environ.get("FL_SIM_LOGIT_HASH_LOG"):
        setting = os.environ.get("FL_SIM_KERNEL_SETTING", "default")
        with open(path, "a") as f:
            f.writelines(f"{setting} {line}\n" for line in lines)


def signature_inputs(runner, corpus, rng):
    """Real inputs for every signature input: held-out tokens, a random recurrent state."""
    seqs = corpus.eval_sequences(4)
    out = {}
    for name, d in runner.get_input_details().items():
        shape, dtype = list(d["shape"]), np.dtype(d["dtype"])
        if name == "tokens":
            out[name] = seqs[:shape[0], :shape[1]].astype(dtype)
        elif name == "token":
            out[name] = seqs[0, 1:1 + shape[0]].astype(dtype)
        else:                                    # h, c: a state the model could have produced
            out[name] = rng.uniform(-1, 1, shape).astype(dtype)
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_every_inference_file_runs_every_signature_with_litert_defaults(four_kinds, kind):
    # What an app does: Interpreter(model_path=...) with nothing else set (the XNNPACK
    # delegate on), and the same with the default delegates off.
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from fl_sim.export.formats import FORMATS, UNSUPPORTED

    run_dir, _ = four_kinds
    _, corpus, _ = keras_model(run_dir / kind)
    exp = run_dir / kind / "export"
    meta = json.loads((exp / "metadata.json").read_text())
    files = sorted(p for p in exp.glob("model_*.tflite") if p.name != "model_train.tflite")
    # every format fl-sim export writes for this kind
    assert [p.name for p in files] == sorted(f"model_{f}.tflite" for f in FORMATS if (kind, f) not in UNSUPPORTED)
    rng = np.random.default_rng(0)
    signatures = ["sequence", "step"] if kind in RECURRENT else ["sequence"]
    for path in files:
        fmt = path.stem.removeprefix("model_")
        assert meta["models"][fmt]["runtime"]["checked"] == {"default_xnnpack": "ok", "builtin_kernels": "ok"}
        results = []
        for options in ({}, {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}):
            interp = Interpreter(model_path=str(path), **options)
            assert sorted(interp.get_signature_list()) == sorted(signatures), path.name
            outs = {}
            for key in signatures:
                runner = interp.get_signature_runner(key)
                rng = np.random.default_rng(0)
                outs[key] = runner(**signature_inputs(runner, corpus, rng))
                for name, value in outs[key].items():
                    assert np.isfinite(value).all(), (path.name, options, key, name)
            results.append(outs)
        # Both configurations compute the same model: XNNPACK reorders float sums and
        # requantizes differently, so logits agree only to quantization-step size; 0.5 is
        # far below the logit range of even these tiny models (tens) yet catches a wrong
        # or missing weight (differences of the logits' own size).
        for key in signatures:
            diff = np.abs(results[0][key]["logits"] - results[1][key]["logits"]).max()
            assert diff < 0.5, (path.name, key, diff)
    # The training file: builtin signatures run with the defaults; save/restore need Flex,
    # and metadata says so.
    train = meta["models"]["train"]
    assert "Flex" in train["runtime"]["options_needed"] and sorted(train["flex_signatures"]) == ["restore", "save"]
    interp = Interpreter(model_path=str(exp / "model_train.tflite"))
    runner = interp.get_signature_runner("infer")
    assert np.isfinite(runner(**signature_inputs(runner, corpus, rng))["logits"]).all()


@pytest.mark.parametrize("kind", ["si_cifg", "transformer"])
def test_every_inference_file_runs_in_litert_compiled_model(four_kinds, kind):
    # LiteRT's newer CompiledModel API (CPU), which docs/android_bundle.md offers beside the
    # Interpreter: same signatures, same outputs as Interpreter(model_path=...) (both run
    # the same CPU kernels with the same delegate: bit-identical).
    from ai_edge_litert.compiled_model import CompiledModel
    from ai_edge_litert.interpreter import Interpreter

    run_dir, _ = four_kinds
    _, corpus, _ = keras_model(run_dir / kind)
    exp = run_dir / kind / "export"
    for path in sorted(p for p in exp.glob("model_*.tflite") if p.name != "model_train.tflite"):
        cm = CompiledModel.from_file(str(path))
        interp = Interpreter(model_path=str(path))
        for key, io in cm.get_signature_list().items():
            runner = interp.get_signature_runner(key)
            arrays = signature_inputs(runner, corpus, np.random.default_rng(0))
            inputs = {n: cm.create_input_buffer_by_name(key, n) for n in io["inputs"]}
            for n, buf in inputs.items():
                buf.write(arrays[n])
            outputs = {n: cm.create_output_buffer_by_name(key, n) for n in io["outputs"]}
            cm.run_by_name(key, inputs, outputs)
            expected = runner(**arrays)
            for n, buf in outputs.items():
                got = buf.read(expected[n].size, np.float32).reshape(expected[n].shape)
                np.testing.assert_array_equal(got, expected[n], err_msg=f"{path.name} {key} {n}")


@pytest.mark.parametrize("kind", ["si_cifg", "transformer"])
def test_int4_file_holds_the_channelwise_int4_rounding_of_the_keras_weights(four_kinds, kind):
    # NumPy reference of asymmetric channelwise int4 (ai-edge-quantizer's min/max uniform
    # quantization): per output channel, lo = min(w, 0), hi = max(w, 0), scale = (hi - lo)
    # / 15, zero point z = round(-8 - lo / scale), q = clip(round(w / scale) + z, -8, 7).
    # The embedding table (an EMBEDDING_LOOKUP) and the output layer are read back from
    # the file (two 4-bit values per byte, low nibble first).
    from ai_edge_litert import schema_py_generated as schema

    run_dir, _ = four_kinds
    _, corpus, model = keras_model(run_dir / kind)
    content = (run_dir / kind / "export" / "model_int4.tflite").read_bytes()
    m = schema.ModelT.InitFromPackedBuf(content, 0)
    V, E = corpus.vocab.size, model.get_layer("embedding").output_dim
    found = []
    for t in m.subgraphs[0].tensors:
        if t.type == schema.TensorType.INT4 and [int(d) for d in t.shape] == [V, E]:
            packed = np.asarray(m.buffers[t.buffer].data, np.uint8)
            nib = np.stack([packed & 0xF, packed >> 4], -1).ravel().astype(np.int64)
            q = np.where(nib > 7, nib - 16, nib)[:V * E].reshape(V, E)
            found.append((q, np.asarray(t.quantization.scale, np.float64),
                          np.asarray(t.quantization.zeroPoint, np.int64)))
    assert len(found) == 2                                   # embedding and output layer
    for w in (np.asarray(model.get_layer("embedding").embeddings, np.float64),
              np.asarray(model.get_layer("logits").kernel, np.float64).T):
        lo, hi = np.minimum(w.min(1), 0), np.maximum(w.max(1), 0)
        scale = (hi - lo) / 15
        zp = np.round(-8 - lo / scale)
        ref_q = np.clip(np.round(w / scale[:, None]) + zp[:, None], -8, 7)
        q, s, z = min(found, key=lambda f: np.abs(f[1] - scale).max())
        # Scales are float32 in the file: equal to float32 rounding (rtol 1e-6).
        np.testing.assert_allclose(s, scale, rtol=1e-6)
        np.testing.assert_array_equal(z, zp)
        # Levels: the same rounding except where w / scale lies within float32 rounding of
        # a .5 tie (the quantizer computes in float32): at most a few entries, one level off.
        assert np.abs(q - ref_q).max() <= 1 and (q != ref_q).mean() < 1e-3
        # and every dequantized weight is within half a step of the Keras weight.
        assert (np.abs((q - z[:, None]) * s[:, None] - w) <= 0.5 * s[:, None] * (1 + 1e-5)).all()


@pytest.mark.parametrize("kind", KINDS)
def test_sparse_file_is_sparse_encoded_and_smaller(four_kinds, kind):
    from fl_sim.export.tflite_file import inspect_tflite

    exp = four_kinds[0] / kind / "export"
    dense = (exp / "model_float32.tflite").stat().st_size
    content = (exp / "model_sparse.tflite").read_bytes()
    info = inspect_tflite(content)
    # Really sparse in the file (TFLite sparsity metadata), not zeros in dense buffers.
    assert info["sparse"]["num_tensors"] >= 3
    assert info["sparse"]["encoded_sparsity"] >= 0.75
    assert len(content) < 0.8 * dense, (len(content), dense)
    # The sparse file computes what the pruned Keras model computes.
    assert report(four_kinds[0], kind)["formats"]["sparse"]["tflite"]["top1_agreement"] == 1.0


@pytest.mark.parametrize("kind", ["si_cifg", "transformer"])
def test_on_device_train_signature_lowers_the_loss(four_kinds, kind):
    from fl_sim.export.pipeline import calibration_sequences

    run_dir, _ = four_kinds
    cfg, corpus, model = keras_model(run_dir / kind)
    interp = interpreter(run_dir / kind / "export" / "model_train.tflite")
    assert {"train", "infer", "save", "restore", "get_weights", "set_weights"} <= set(interp.get_signature_list())
    got = interp.get_signature_runner("get_weights")()
    for (name, value), v in zip(sorted(got.items()), model.trainable_variables):
        np.testing.assert_array_equal(value, np.asarray(v), err_msg=name)
    seqs, _ = calibration_sequences(corpus, 1, cfg.client.batch_size)
    train = interp.get_signature_runner("train")
    lr = np.array(cfg.client.lr, np.float32)
    losses = [float(train(tokens=seqs, lr=lr)["loss"]) for _ in range(8)]
    assert losses[-1] < losses[0] - 0.05, losses
    # infer sees the updated weights
    infer = interp.get_signature_runner("infer")
    before = np.asarray(model(seqs[:1, :-1], training=False))
    assert np.abs(infer(tokens=seqs[:1, :-1])["logits"] - before).max() > 1e-3


# --------------------------------------------------------------------------- inputs that fail


def test_missing_or_broken_weights_exit_2_naming_the_file(four_kinds, tmp_path):
    src = four_kinds[0] / "cifg"
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(src / "config.resolved.toml", run)
    r = run_cli("export", run)                                   # no final_weights.npz
    assert r.returncode == 2 and "final_weights.npz: not found" in r.stderr
    (run / "final_weights.npz").write_bytes(b"PK\x03\x04 truncated")
    r = run_cli("export", run)
    assert r.returncode == 2 and "final_weights.npz: not a readable weights file" in r.stderr
    r = run_cli("export", run, "--checkpoint", "round-00099.npz")
    assert r.returncode == 2 and "checkpoint not found" in r.stderr
    (run / "bad.npz").write_bytes(b"\x00" * 64)
    r = run_cli("export", run, "--checkpoint", "bad.npz")
    assert r.returncode == 2 and "not a readable fl_sim checkpoint" in r.stderr
    r = run_cli("export", tmp_path / "nope")
    assert r.returncode == 2 and "no such run directory" in r.stderr
    r = run_cli("export", run, "--formats", "float32,bogus")
    assert r.returncode == 2 and "unknown format" in r.stderr
    # Wrong shapes (weights from another model): caught before any conversion.
    np.savez(run / "final_weights.npz", np.zeros((3, 3), np.float32))
    r = run_cli("export", run, "--formats", "float32")
    assert r.returncode == 2 and "1 arrays, but the" in r.stderr


def test_explicitly_requested_unsupported_format_fails_with_exit_1(four_kinds, tmp_path):
    r = run_cli("export", four_kinds[0] / "si_transformer", "--formats", "float32,int8",
                "--no-training-model", "--out", tmp_path / "x", *FAST_EXPORT)
    assert r.returncode == 1, r.stderr[-2000:]
    assert "requested format(s) failed: si_transformer:int8" in r.stderr
    rep = json.loads((tmp_path / "x" / "report.json").read_text())
    assert rep["formats"]["float32"]["status"] == "ok"
    assert rep["formats"]["int8"]["status"] == "failed" and "known limitation" in rep["formats"]["int8"]["error"]
    assert not (tmp_path / "x" / "model_int8.tflite").exists()


# --------------------------------------------------------------------------- federated pruning


def test_pruned_run_reaches_target_sparsity_and_exports_a_sparse_file(tmp_path):
    r = run_cli("run", "experiments/smoke.toml", "--out", tmp_path, "--rounds", 4,
                "--set", "model.kind=cifg", *TINY_MODEL,
                "--set", "pruning.enabled=true", "--set", "pruning.target_sparsity=0.85",
                "--set", "pruning.begin_round=1", "--set", "pruning.end_round=3")
    assert r.returncode == 0, r.stderr[-3000:]
    (run_dir,) = run_dirs(tmp_path, "smoke")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rounds = [x for x in rows if x["type"] == "round"]
    sched = [x["pruning_target_sparsity"] for x in rounds]
    assert sched == sorted(sched) and sched[-1] == 0.85 and 0 < sched[1] < 0.85
    assert rounds[-1]["pruning_sparsity"] == pytest.approx(0.85, abs=0.005)
    with np.load(run_dir / "final_weights.npz") as data:
        kernel = data["arr_1"]                                   # cifg/cell/kernel [E, 3H]
    assert (kernel == 0).sum() == round(0.85 * kernel.size)
    x = run_cli("export", run_dir, "--formats", "float32,sparse", "--no-training-model", *FAST_EXPORT)
    assert x.returncode == 0, x.stderr[-3000:]
    rep = json.loads((run_dir / "export" / "report.json").read_text())
    assert rep["pruning"]["how"].startswith("pruned during training")
    sp = rep["formats"]["sparse"]
    assert sp["file_info"]["sparse"]["encoded_sparsity"] >= 0.8
    assert sp["size_bytes"] < 0.7 * rep["formats"]["float32"]["size_bytes"]
    # The run's weights were exported as they are: the sparse file equals the float32 one.
    assert sp["tflite"]["accuracy"] == rep["formats"]["float32"]["tflite"]["accuracy"]

    # The masks are in the checkpoint (what --resume reloads; tests/unit/test_pruning.py
    # shows a resumed strategy masks exactly as the original) and match the weights' zeros.
    # (An end-to-end resume here would not notice lost masks: entries regrown in one round
    # stay the smallest, so recomputed masks coincide.)
    with np.load(run_dir / "checkpoints" / "round-00004.npz") as ck:
        mask = ck["opt_pruning_mask_1"].astype(bool)
        np.testing.assert_array_equal(~mask, ck["w_1"] == 0)
        assert float(ck["opt_pruning_sparsity"]) == 0.85


def test_impossible_pruning_schedule_is_a_config_error(tmp_path):
    r = run_cli("run", "experiments/smoke.toml", "--out", tmp_path, "--set", "pruning.enabled=true",
                "--set", "pruning.begin_round=3", "--set", "pruning.end_round=2")
    assert r.returncode == 2
    assert "[pruning]: pruning.end_round = 2 is before pruning.begin_round = 3" in r.stderr
    assert run_dirs(tmp_path, "smoke") == []


# --------------------------------------------------------------------------- file compaction


def test_compaction_stores_shared_tables_once_and_changes_no_output(tmp_path):
    # A two-signature module whose signatures use the same weight (as step / sequence do):
    # the converter shares the weight's data but gives each signature its own per-channel
    # quantization table. Compacted, the file computes bit-identical outputs.
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from fl_sim.export.compact import compact
    from fl_sim.export.tflite_file import size_breakdown

    rng = np.random.default_rng(0)
    w = tf.Variable(rng.normal(size=(64, 300)).astype(np.float32))
    b = tf.Variable(rng.normal(size=(300,)).astype(np.float32))

    class Two(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 64], tf.float32, name="x")])
        def one(self, x):
            return {"y": tf.matmul(x, w) + b}

        @tf.function(input_signature=[tf.TensorSpec([3, 64], tf.float32, name="x")])
        def three(self, x):
            return {"y": tf.nn.relu(tf.matmul(x, w) + b)}

    mod = Two()
    mod.w, mod.b = w, b
    tf.saved_model.save(mod, str(tmp_path / "sm"), signatures={"one": mod.one.get_concrete_function(),
                                                               "three": mod.three.get_concrete_function()})
    conv = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "sm"), signature_keys=["one", "three"])
    conv.optimizations = {tf.lite.Optimize.DEFAULT}               # int8 weights, per channel
    content = conv.convert()
    packed, stats = compact(content)
    before, after = size_breakdown(content), size_breakdown(packed)
    # 300 scales + 300 int64 zero points = 3,600 bytes, once instead of once per signature
    assert before["quantization_bytes"] == 2 * 3600 and after["quantization_bytes"] == 3600
    assert after["constant_bytes"] == before["constant_bytes"]
    assert len(packed) < len(content) - 3600 and stats["bytes_after"] == len(packed)
    assert all(r["shared"] for r in after["largest"] if r["bytes"] >= 64 * 300)
    for options in ({}, {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}):
        for key, n in (("one", 1), ("three", 3)):
            x = rng.normal(size=(n, 64)).astype(np.float32)
            got = [Interpreter(model_content=c, **options).get_signature_runner(key)(x=x)["y"]
                   for c in (content, packed)]
            np.testing.assert_array_equal(got[0], got[1])


# --------------------------------------------------------------------------- the demo model


@pytest.mark.demo_model
def test_budgets_and_sizes_hold_on_the_trained_demo_model(tmp_path):
    """The report's accuracy budgets where they mean something: the demo SI-CIFG
    (experiments/si_cifg.toml, 707,404 parameters) trained for its 60 rounds, whose top-1
    predictions are mostly clear (the tiny fixture models above are barely trained, so
    many of theirs are near ties a rounding flips). Same thresholds as the report
    (fl_sim.export.report.BUDGETS), drops recomputed here from the accuracies."""
    from fl_sim.export.report import BUDGETS

    assert BUDGETS["int4"] == ("float32", 0.02) and {f: b for f, (_, b) in BUDGETS.items()
                                                      if f in BUDGET} == BUDGET
    r = run_cli("run", "experiments/si_cifg.toml", "--out", tmp_path, timeout=3600)
    assert r.returncode == 0, r.stderr[-3000:]
    (run_dir,) = run_dirs(tmp_path, "si_cifg")
    x = run_cli("export", run_dir, "--no-training-model", "--latency-runs", "5", "--no-xnnpack",
                timeout=3600)
    assert x.returncode == 0, x.stderr[-3000:]
    rep = json.loads((run_dir / "export" / "report.json").read_text())
    fm = rep["formats"]
    assert all(fm[f]["status"] == "ok" for f in BUDGETS), {f: fm[f]["status"] for f in fm}
    # Not ties: at least 90% of the positions have a float32 top-1 margin that the
    # dynamic_int8 file's logit error cannot close (parity.agreement_summary).
    assert fm["dynamic_int8"]["tflite"]["clear_fraction"] >= 0.9, fm["dynamic_int8"]["tflite"]
    for fmt, (against, budget) in BUDGETS.items():
        ref = rep["keras_pruned"] if against == "keras_pruned" else fm[against]["tflite"]
        drop = ref["accuracy"] - fm[fmt]["tflite"]["accuracy"]
        assert drop <= budget, f"{fmt}: accuracy drop {drop:.4f} vs {against} > budget {budget}"
        assert fm[fmt]["budget"]["within_budget"] is True
    # The sizes docs/android_bundle.md states (measured 0.294x and 0.194x; a lost
    # compaction or a format falling back to float would show here).
    assert fm["dynamic_int8"]["size_ratio_to_float32"] <= 0.30
    assert fm["int4"]["size_ratio_to_float32"] <= 0.20
