"""``export_run``: one run directory (or a comparison's sub-runs) -> TFLite bundle + report.

For each model: load the config, corpus and weights; build the Keras model; convert every
requested format (see :mod:`fl_sim.export.convert`); run each file in the interpreter on
held-out clients and compare with Keras (:mod:`fl_sim.export.parity`); convert the
on-device training model; write vocab.txt, metadata.json, report.md and report.json.

Data used (all documented in the report):

* evaluation: ``corpus.eval_sequences(eval_sequences)``, the held-out (eval) clients'
  sequences, a seeded subsample of ``eval_sequences`` when there are more (the same
  subsample the server evaluates on when ``server.eval_max_sequences`` equals it);
* int8 calibration: ``calibration_sequences`` TRAINING-client sequences, taken up to
  ``CALIBRATION_PER_CLIENT`` per client from training clients in an order drawn from
  (seed, "export-calibration"); the ``step`` signature is calibrated on the (token, h, c)
  triples the Keras step function produces along those sequences.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fl_sim.export.formats import DESCRIPTIONS, FORMATS, SPARSE_FORMATS, UNSUPPORTED
from fl_sim.export.runs import (ExportError, RunWeights, check_weights, load_run, resolve_run_dir,
                               sub_runs)


CALIBRATION_PER_CLIENT = 4
#: One-shot export-time sparsity when the run was not pruned.
DEFAULT_SPARSITY = 0.8
#: Below this many zeros per tensor the converter keeps a tensor dense (DenseToSparse pass).
CONVERTER_MIN_SPARSITY = 0.3


@dataclass
class ExportOptions:
    formats: tuple[str, ...] = FORMATS
    #: True when the user named the formats (--formats): known-unsupported combinations are
    #: then attempted and count as failures; by default they are skipped and reported.
    formats_explicit: bool = False
    checkpoint: str | None = None
    out: Path | None = None
    sparsity: float = DEFAULT_SPARSITY
    calibration_sequences: int = 100
    eval_sequences: int = 500
    latency_runs: int = 100
    step_parity_sequences: int = 8
    training: bool = True
    xnnpack: bool = True
    progress: object = field(default=print, repr=False)


@dataclass
class ModelExport:
    name: str
    out_dir: Path
    report: dict
    failed_formats: list[str]


# ----------------------------------------------------------------------------- entry point


def export_run(run_dir: Path, options: ExportOptions | None = None) -> list[ModelExport]:
    """Export a run directory (a comparison run: every sub-run, plus a combined report)."""
    from fl_sim.export.report import write_combined_report

    options = options or ExportOptions()
    run_dir, note = resolve_run_dir(Path(run_dir))
    if note:
        (options.progress or (lambda s: None))(f"fl-sim export: {note}")
    unknown = [f for f in options.formats if f not in FORMATS]
    if unknown:
        raise ExportError(f"--formats: unknown format(s) {', '.join(unknown)}; expected some of "
                          f"{', '.join(FORMATS)}")
    if not 0.0 < options.sparsity < 1.0:
        raise ExportError(f"--sparsity {options.sparsity}: expected a number in (0, 1)")
    subs = sub_runs(run_dir)
    base_out = Path(options.out) if options.out else None
    # Load every sub-run's weights first so a broken file fails before any conversion.
    runs = [load_run(d, name, options.checkpoint) for name, d in subs]
    results = []
    for (name, d), run in zip(subs, runs):
        if base_out is None:
            out = d / "export"
        else:
            out = base_out / name if name else base_out
        results.append(export_model(run, out, options))
    if len(subs) > 1:
        combined = base_out if base_out is not None else run_dir / "export"
        write_combined_report(combined, run_dir, results)
    return results


# ----------------------------------------------------------------------------- one model


def export_model(run: RunWeights, out_dir: Path, options: ExportOptions) -> ModelExport:
    import tensorflow as tf  # noqa: F401 - heavy import only when exporting

    from fl_sim.export.convert import ConversionError, convert_format
    from fl_sim.data import DataError, load_corpus
    from fl_sim.export import parity
    from fl_sim.export.bundle import write_bundle
    from fl_sim.export.report import evaluate_budgets, write_report
    from fl_sim.export.signatures import save_inference_model
    from fl_sim.models import build_model, is_recurrent
    from fl_sim.pruning_math import prunable_flags, prune_once, sparsity_report

    say = options.progress or (lambda s: None)
    cfg = run.cfg
    t_start = time.perf_counter()
    try:
        corpus = load_corpus(cfg.data, cfg.experiment.seed)
    except DataError as exc:
        raise ExportError(f"{run.run_dir}: cannot load the run's data ({exc})") from None
    model = build_model(cfg.model, corpus.vocab.size, corpus.seq_len, seed=cfg.experiment.seed)
    check_weights(run.weights, model, run.weights_file)
    _assign(model, run.weights)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _clear_previous(out_dir)
    recurrent = is_recurrent(model)
    label = run.name
    say(f"[export {label}] {cfg.model.kind}: {run.weights_file} -> {out_dir}")

    eval_seqs = corpus.eval_sequences(options.eval_sequences)
    calib, calib_clients = calibration_sequences(corpus, cfg.experiment.seed, options.calibration_sequences)
    ref = parity.KerasReference(model, eval_seqs)
    names = [v.path for v in model.trainable_variables]

    report: dict = {
        "model": label, "kind": cfg.model.kind, "run_dir": str(run.run_dir),
        "run_id": run.run_dir.name if not label or run.run_dir.name != label else run.run_dir.parent.name,
        "weights_file": str(run.weights_file), "checkpoint_round": run.round,
        "vocab_size": corpus.vocab.size, "seq_len": corpus.seq_len,
        "parameters": int(sum(w.size for w in run.weights)),
        "signatures": ["step", "sequence"] if recurrent else ["sequence"],
        "step_signature": ("streaming step(token, h, c) -> (logits, h, c), batch 1" if recurrent else
                           "n/a: a transformer has no recurrent state (and these models have no "
                           "KV cache), so each keystroke runs `sequence` on the last T tokens"),
        "evaluation": {"source": "held-out (eval) clients", "sequences": int(len(eval_seqs)),
                       "cap": options.eval_sequences,
                       "selection": "corpus.eval_sequences(cap): all eval clients' sequences, or a "
                                    "subsample drawn by (seed, 'eval-subsample') when there are more",
                       "clients": len(corpus.eval_client_ids),
                       "targets": int((ref.targets != 0).sum())},
        "calibration": {"source": "training clients", "sequences": int(len(calib)),
                        "requested": options.calibration_sequences,
                        "per_client_max": CALIBRATION_PER_CLIENT,
                        "clients": calib_clients,
                        "selection": "training clients in an order drawn by (seed, "
                                     "'export-calibration'), up to 4 random sequences each"},
        "interpreter": {"accuracy_and_parity": "OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES "
                                               "(builtin kernels, no XNNPACK)",
                        "also_measured": "OpResolverType.AUTO (default XNNPACK delegate)"
                                         if options.xnnpack else None,
                        "threads": 1, "latency_runs": options.latency_runs},
        "keras": {**ref.metrics, "logits_sha256": ref.logits_sha256, "logits_std": ref.logits_std},
        "formats": {},
        "training_model": None,
    }

    requested = [f for f in FORMATS if f in options.formats]
    if not options.formats_explicit:
        for fmt in [f for f in requested if (cfg.model.kind, f) in UNSUPPORTED]:
            requested.remove(fmt)
            reason = UNSUPPORTED[(cfg.model.kind, fmt)]
            report["formats"][fmt] = {"format": fmt, "status": "unsupported", "reason": reason}
            say(f"[export {label}] {fmt}: unsupported for {cfg.model.kind} ({reason})")
    work = Path(tempfile.mkdtemp(prefix="fl_sim_export_"))
    failed: list[str] = []
    try:
        dense_dir = work / "dense"
        keys = save_inference_model(model, dense_dir, embedding="gather")
        pruned_ref = None
        sparse_dir = None
        if any(f in SPARSE_FORMATS for f in requested):
            flags = prunable_flags(run.weights, names)
            measured = sparsity_report(run.weights, flags)
            if cfg.pruning.enabled and measured["prunable_sparsity"] >= CONVERTER_MIN_SPARSITY:
                pruned = [w.copy() for w in run.weights]
                how = (f"pruned during training (pruning.enabled, target "
                       f"{cfg.pruning.target_sparsity:.2f}); weights exported as they are")
            else:
                pruned, _ = prune_once(run.weights, options.sparsity, names)
                how = (f"one-shot magnitude pruning at export time to {options.sparsity:.0%} per "
                       f"prunable tensor (the run was "
                       + ("pruned, but these weights are only "
                          f"{measured['prunable_sparsity']:.0%} sparse" if cfg.pruning.enabled
                          else "not pruned") + "); an accuracy drop is expected")
            after = sparsity_report(pruned, flags)
            report["pruning"] = {
                "how": how,
                "prunable_tensors": [n for n, f in zip(names, flags) if f],
                "never_pruned": [n for n, f in zip(names, flags) if not f],
                "prunable_sparsity_before": measured["prunable_sparsity"],
                "prunable_sparsity": after["prunable_sparsity"],
                "overall_sparsity": after["overall_sparsity"],
            }
            _assign(model, pruned)
            pruned_ref = parity.KerasReference(model, eval_seqs)
            report["keras_pruned"] = pruned_ref.metrics
            sparse_dir = work / "sparse"
            save_inference_model(model, sparse_dir, embedding="one_hot")
            pruned_calib = _representative(model, calib, recurrent) if "sparse_int8" in requested else None
            _assign(model, run.weights)
        dense_calib = _representative(model, calib, recurrent) if any(f in ("int8",) for f in requested) else None

        contents: dict[str, bytes] = {}
        for fmt in requested:
            sparse = fmt in SPARSE_FORMATS
            src, rep_data, this_ref = (sparse_dir, pruned_calib if fmt == "sparse_int8" else None, pruned_ref) \
                if sparse else (dense_dir, dense_calib if fmt == "int8" else None, ref)
            entry: dict = {"format": fmt, "description": DESCRIPTIONS[fmt], "file": f"model_{fmt}.tflite"}
            try:
                content, info = convert_format(src, keys, fmt, rep_data)
            except ConversionError as exc:
                entry.update(status="failed", error=str(exc))
                failed.append(fmt)
                report["formats"][fmt] = entry
                say(f"[export {label}] {fmt}: FAILED ({exc})")
                continue
            (out_dir / entry["file"]).write_bytes(content)
            entry.update(info)
            try:
                entry.update(_measure(content, fmt, this_ref, recurrent, model, options))
            except Exception as exc:  # noqa: BLE001 - the file exists but does not run
                entry.update(status="failed", error=f"{fmt}: converted, but the interpreter cannot run it: "
                                                    + " ".join(str(exc).split())[:400])
                if (cfg.model.kind, fmt) in UNSUPPORTED:
                    entry["error"] += f" (known limitation: {UNSUPPORTED[(cfg.model.kind, fmt)]})"
                # Leave no file behind that the bundle's metadata would list as usable.
                (out_dir / entry["file"]).unlink(missing_ok=True)
                failed.append(fmt)
                report["formats"][fmt] = entry
                say(f"[export {label}] {fmt}: FAILED ({entry['error']})")
                continue
            entry["status"] = "ok"
            contents[fmt] = content
            report["formats"][fmt] = entry
            say(f"[export {label}] {fmt}: {len(content):,} bytes, accuracy "
                f"{entry['tflite']['accuracy']:.4f}, top-1 agreement {entry['tflite']['top1_agreement']:.4f}")
        for fmt in FORMATS:
            if fmt not in requested:
                report["formats"].setdefault(fmt, {"format": fmt, "status": "not requested"})
        report["formats"] = {f: report["formats"][f] for f in FORMATS if f in report["formats"]}
        _relative_numbers(report)
        evaluate_budgets(report)

        if options.training:
            report["training_model"] = _training_model(model, cfg, calib, work, out_dir, say, label)

        write_bundle(out_dir, corpus, cfg, run, report, contents, model)
        report["export_seconds"] = round(time.perf_counter() - t_start, 1)
        write_report(out_dir, report)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ModelExport(label, out_dir, report, failed)


# ----------------------------------------------------------------------------- helpers


def _clear_previous(out_dir: Path) -> None:
    """Remove files an earlier export wrote here (only the names this module writes)."""
    for p in out_dir.glob("model_*.tflite"):
        p.unlink()
    for name in ("vocab.txt", "metadata.json", "report.md", "report.json"):
        (out_dir / name).unlink(missing_ok=True)


def _assign(model, weights) -> None:
    for v, w in zip(model.trainable_variables, weights):
        v.assign(np.asarray(w, dtype=v.dtype))


def calibration_sequences(corpus, seed: int, n: int) -> tuple[np.ndarray, list[str]]:
    """Up to ``n`` training-client sequences (see the module docstring); and their clients."""
    from fl_sim.data.base import rng_for

    rng = rng_for(seed, "export-calibration")
    ids = list(corpus.train_client_ids)
    order = rng.permutation(len(ids))
    rows, clients = [], []
    total = 0
    for i in order:
        if total >= n:
            break
        seqs = corpus.client_train(ids[i])
        if len(seqs) == 0:
            continue
        take = seqs[rng.permutation(len(seqs))[:min(CALIBRATION_PER_CLIENT, n - total)]]
        rows.append(take)
        clients.append(ids[i])
        total += len(take)
    if not rows:
        raise ExportError("no training-client sequences to calibrate int8 quantization with")
    return np.concatenate(rows).astype(np.int32), clients


def _representative(model, calib: np.ndarray, recurrent: bool):
    """Representative dataset (signature key, inputs) for both signatures."""
    samples: list[tuple[str, dict]] = []
    inputs = calib[:, :-1]
    for x in inputs:
        samples.append(("sequence", {"tokens": x[None].astype(np.int32)}))
    if recurrent:
        from fl_sim.models import initial_state, make_step_fn

        step = make_step_fn(model, batch_size=1)
        for x in inputs:
            h, c = initial_state(model, 1)
            last = int(np.max(np.flatnonzero(x != 0))) if np.any(x != 0) else 0
            for tok in x[:last + 1]:
                token = np.array([tok], np.int32)
                samples.append(("step", {"token": token, "h": h, "c": c}))
                _, h, c = step(token, h, c)
                h, c = h.numpy(), c.numpy()

    def gen():
        yield from samples

    return gen


def _measure(content: bytes, fmt: str, ref, recurrent: bool, model, options: ExportOptions) -> dict:
    """Inspect the file and run it: metrics, parity, latency.

    Raises if the file does not run with the reference resolver (the format is then
    reported as failed); failures with the XNNPACK delegate are recorded, not raised.
    """
    from fl_sim.export import parity
    from fl_sim.export.tflite_file import inspect_tflite

    out: dict = {"size_bytes": len(content), "sha256": hashlib.sha256(content).hexdigest(),
                 "file_info": inspect_tflite(content)}
    out["tflite"] = parity.evaluate_sequence(content, ref, "reference")
    x = ref.inputs[:1] if len(ref.inputs) else np.zeros((1, model.inputs[0].shape[1]), np.int32)
    lat: dict = {"sequence_ms": parity.latency_ms(content, "sequence", {"tokens": x}, options.latency_runs)}
    step_in = None
    if recurrent:
        from fl_sim.models import initial_state

        h, c = initial_state(model, 1)
        step_in = {"token": np.array([x[0, 0]], np.int32), "h": h, "c": c}
        out.update(parity.step_parity(content, ref, (h.shape, c.shape), options.step_parity_sequences))
        lat["step_ms"] = parity.latency_ms(content, "step", step_in, options.latency_runs)
        lat["per_token_ms"] = lat["step_ms"]
    else:
        lat["per_token_ms"] = lat["sequence_ms"]
    if options.xnnpack:
        try:
            out["xnnpack_top1_agreement"] = parity.top1_agreement(content, ref, "xnnpack")
            lat["sequence_ms_xnnpack"] = parity.latency_ms(content, "sequence", {"tokens": x},
                                                           options.latency_runs, "xnnpack")
            if step_in is not None:
                lat["step_ms_xnnpack"] = parity.latency_ms(content, "step", step_in, options.latency_runs,
                                                           "xnnpack")
        except Exception as exc:  # noqa: BLE001 - a delegate limitation, reported
            out["xnnpack_error"] = " ".join(str(exc).split())[:300]
    out["latency"] = lat
    return out


def _relative_numbers(report: dict) -> None:
    fm = report["formats"]
    base = fm.get("float32", {})
    base_size = base.get("size_bytes")
    base_acc = base.get("tflite", {}).get("accuracy")
    sparse_acc = fm.get("sparse", {}).get("tflite", {}).get("accuracy")
    keras_acc = report["keras"]["accuracy"]
    for fmt, e in fm.items():
        if e.get("status") != "ok":
            continue
        e["size_ratio_to_float32"] = e["size_bytes"] / base_size if base_size else None
        acc = e["tflite"]["accuracy"]
        e["accuracy_drop_vs_float32"] = (base_acc - acc) if base_acc is not None else None
        e["accuracy_drop_vs_keras"] = keras_acc - acc
        if fmt == "sparse_int8" and sparse_acc is not None:
            e["accuracy_drop_vs_sparse"] = sparse_acc - acc
        if fmt in SPARSE_FORMATS and "keras_pruned" in report:
            e["accuracy_drop_vs_keras_pruned"] = report["keras_pruned"]["accuracy"] - acc


def _training_model(model, cfg, calib: np.ndarray, work: Path, out_dir: Path, say, label: str) -> dict:
    """Convert the on-device training model and smoke-test it in the interpreter."""
    from fl_sim.export import parity
    from fl_sim.export.convert import convert_training
    from fl_sim.export.signatures import FLEX_TRAINING_SIGNATURES, save_training_model
    from fl_sim.export.tflite_file import inspect_tflite

    batch = int(cfg.client.batch_size)
    entry: dict = {"file": "model_train.tflite", "batch_size": batch, "lr_default": cfg.client.lr}
    try:
        keys = save_training_model(model, work / "train", batch)
        content, info = convert_training(work / "train", keys)
    except Exception as exc:  # noqa: BLE001 - report it and go on
        entry.update(status="failed", error=" ".join(str(exc).split())[:600])
        say(f"[export {label}] training model: FAILED ({entry['error']})")
        return entry
    (out_dir / entry["file"]).write_bytes(content)
    fi = inspect_tflite(content)
    entry.update(status="ok", size_bytes=len(content), sha256=hashlib.sha256(content).hexdigest(),
                 signatures=sorted(fi["signatures"]), **info)
    entry["flex_ops"] = {k: v["flex_ops"] for k, v in fi["signatures"].items() if v["flex_ops"]}
    entry["builtin_only_signatures"] = sorted(k for k, v in fi["signatures"].items() if not v["flex_ops"])
    # Smoke test: the weights are the run's, and a few SGD steps lower the loss on one batch.
    interp = parity.make_interpreter(content)
    got = interp.get_signature_runner("get_weights")()
    expected = [np.asarray(v) for v in model.trainable_variables]
    entry["get_weights_max_abs_diff"] = float(max(np.abs(got[k] - w).max()
                                                  for k, w in zip(sorted(got), expected)))
    tokens = np.zeros((batch, calib.shape[1]), np.int32)
    rows = calib[:batch]
    tokens[:len(rows)] = rows
    train = interp.get_signature_runner("train")
    losses = [float(train(tokens=tokens, lr=np.array(cfg.client.lr, np.float32))["loss"]) for _ in range(5)]
    entry["smoke_train_losses"] = losses
    t0 = time.perf_counter()
    train(tokens=tokens, lr=np.array(0.0, np.float32))
    entry["train_step_ms"] = round((time.perf_counter() - t0) * 1e3, 2)
    flex_status = {}
    for key in FLEX_TRAINING_SIGNATURES:
        try:
            runner = interp.get_signature_runner(key)
            runner(checkpoint_path=np.array(str(work / "ckpt"), dtype=np.bytes_))
            flex_status[key] = "ran"
        except Exception as exc:  # noqa: BLE001
            flex_status[key] = ("not runnable in ai-edge-litert's Python interpreter: "
                                + " ".join(str(exc).split())[:160])
    entry["flex_signatures_here"] = flex_status
    say(f"[export {label}] training model: {len(content):,} bytes, smoke-test loss "
        f"{losses[0]:.3f} -> {losses[-1]:.3f}")
    return entry
