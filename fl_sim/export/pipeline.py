"""``export_run``: one run directory (or a comparison's sub-runs) -> TFLite bundle + report.

For each model (:func:`export_model`): load the config, corpus and weights and build the
Keras model (``_load``); write the SavedModels the formats are converted from
(``_save_sources``); per format, convert (:mod:`fl_sim.export.convert`), check that every
signature runs with LiteRT's defaults (XNNPACK) and with builtin kernels
(:mod:`fl_sim.export.runtime`), run the file on held-out clients against Keras
(:mod:`fl_sim.export.parity`) and write it (``_export_format``); convert the on-device
training model; write vocab.txt, metadata.json, report.md and report.json.

Data used (all documented in the report):

* evaluation: ``corpus.eval_sequences(eval_sequences)``, the held-out (eval) clients'
  sequences, a seeded subsample of ``eval_sequences`` when there are more (the same
  subsample the server evaluates on when ``server.eval_max_sequences`` equals it);
* int8 calibration: ``calibration_sequences`` TRAINING-client sequences (a DP run: the
  held-out clients', designated public, so the calibrated files stay covered by the run's
  privacy statement), taken up to ``CALIBRATION_PER_CLIENT`` per client in an order drawn
  from (seed, "export-calibration"); the ``step`` signature is calibrated on the (token, h,
  c) triples the Keras step function produces along those sequences.
"""

from __future__ import annotations

import hashlib
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
    if any(run.cfg.privacy.enabled for run in runs):
        # A DP run's statement lists every released file, so it must name the export's too.
        from fl_sim.privacy.release import STATEMENT, refresh_listing, rules_for

        if (run_dir / STATEMENT).exists():
            refresh_listing(run_dir, rules_for(runs[0].cfg, calibration_public=calibration_is_public(runs[0].cfg)),
                            [base_out] if base_out is not None else [])
    return results


def calibration_is_public(cfg) -> bool:
    """A DP run calibrates full-int8 on the held-out (public) clients, never on training text."""
    return bool(cfg.privacy.enabled)


# ----------------------------------------------------------------------------- one model


@dataclass
class _Job:
    """One model being exported: its run, corpus, Keras model and reference outputs."""

    run: RunWeights
    out_dir: Path
    options: ExportOptions
    corpus: object
    model: object
    recurrent: bool
    eval_seqs: np.ndarray
    calib: np.ndarray
    calib_clients: list
    ref: object                    # parity.KerasReference of the run's weights
    say: object

    @property
    def label(self) -> str:
        return self.run.name


@dataclass
class _Source:
    """A SavedModel to convert formats from, and what their files are compared with."""

    saved_model: Path
    keys: list
    ref: object
    representative: object = None


#: The SavedModel each format is converted from (see :func:`_save_sources`).
_SOURCE_OF = {"float32": "dense", "float16": "dense", "dynamic_int8": "dense", "int8": "dense",
              "int4": "lookup", "sparse": "pruned_one_hot", "sparse_int8": "pruned"}


def export_model(run: RunWeights, out_dir: Path, options: ExportOptions) -> ModelExport:
    """Convert, check and report every requested format of one model; write its bundle."""
    from fl_sim.export.bundle import write_bundle
    from fl_sim.export.report import evaluate_budgets, write_report

    t_start = time.perf_counter()
    job = _load(run, Path(out_dir), options)
    report = _report_header(job)
    requested = _requested_formats(job, report)
    contents: dict[str, bytes] = {}
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="fl_sim_export_") as work:
        sources = _save_sources(job, requested, Path(work), report)
        for fmt in requested:
            entry, content = _export_format(job, fmt, sources[_SOURCE_OF[fmt]])
            report["formats"][fmt] = entry
            if content is None:
                failed.append(fmt)
            else:
                contents[fmt] = content
        for fmt in FORMATS:
            report["formats"].setdefault(fmt, {"format": fmt, "status": "not requested"})
        report["formats"] = {f: report["formats"][f] for f in FORMATS}
        _relative_numbers(report)
        evaluate_budgets(report)
        if options.training:
            report["training_model"] = _training_model(job, Path(work))
        write_bundle(job.out_dir, job.corpus, run.cfg, run, report, contents, job.model)
    report["export_seconds"] = round(time.perf_counter() - t_start, 1)
    write_report(job.out_dir, report)
    return ModelExport(job.label, job.out_dir, report, failed)


def _load(run: RunWeights, out_dir: Path, options: ExportOptions) -> _Job:
    """The run's corpus and Keras model with its weights; the evaluation and calibration data."""
    import tensorflow as tf  # noqa: F401 - heavy import only when exporting

    from fl_sim.data import DataError, load_corpus
    from fl_sim.export import parity
    from fl_sim.models import build_model, is_recurrent

    cfg = run.cfg
    try:
        corpus = load_corpus(cfg.data, cfg.experiment.seed)
    except DataError as exc:
        raise ExportError(f"{run.run_dir}: cannot load the run's data ({exc})") from None
    model = build_model(cfg.model, corpus.vocab.size, corpus.seq_len, seed=cfg.experiment.seed)
    check_weights(run.weights, model, run.weights_file)
    _assign(model, run.weights)
    out_dir.mkdir(parents=True, exist_ok=True)
    _clear_previous(out_dir)
    say = options.progress or (lambda s: None)
    say(f"[export {run.name}] {cfg.model.kind}: {run.weights_file} -> {out_dir}")
    eval_seqs = corpus.eval_sequences(options.eval_sequences)
    calib, calib_clients = calibration_sequences(corpus, cfg.experiment.seed, options.calibration_sequences,
                                                 public=calibration_is_public(cfg))
    return _Job(run=run, out_dir=out_dir, options=options, corpus=corpus, model=model,
                recurrent=is_recurrent(model), eval_seqs=eval_seqs, calib=calib,
                calib_clients=calib_clients, ref=parity.KerasReference(model, eval_seqs), say=say)


def _report_header(job: _Job) -> dict:
    """The report's description of the model, the data it is measured on and how."""
    run, cfg, options, label = job.run, job.run.cfg, job.options, job.label
    public_calib = calibration_is_public(cfg)
    return {
        "model": label, "kind": cfg.model.kind, "run_dir": str(run.run_dir),
        "run_id": run.run_dir.name if not label or run.run_dir.name != label else run.run_dir.parent.name,
        "weights_file": str(run.weights_file), "checkpoint_round": run.round,
        "vocab_size": job.corpus.vocab.size, "seq_len": job.corpus.seq_len,
        "parameters": int(sum(w.size for w in run.weights)),
        "signatures": ["step", "sequence"] if job.recurrent else ["sequence"],
        "step_signature": ("streaming step(token, h, c) -> (logits, h, c), batch 1" if job.recurrent else
                           "n/a: a transformer has no recurrent state (and these models have no "
                           "KV cache), so each keystroke runs `sequence` on the last T tokens"),
        "evaluation": {"source": "held-out (eval) clients", "sequences": int(len(job.eval_seqs)),
                       "cap": options.eval_sequences,
                       "selection": "corpus.eval_sequences(cap): all eval clients' sequences, or a "
                                    "subsample drawn by (seed, 'eval-subsample') when there are more",
                       "clients": len(job.corpus.eval_client_ids),
                       "targets": int((job.ref.targets != 0).sum())},
        "calibration": {"source": ("held-out clients (designated public; DP run)" if public_calib
                                   else "training clients"),
                        "covered_by_privacy_statement": public_calib if cfg.privacy.enabled else None,
                        "sequences": int(len(job.calib)),
                        "requested": options.calibration_sequences,
                        "per_client_max": CALIBRATION_PER_CLIENT,
                        "clients": job.calib_clients,
                        "selection": ("held-out" if public_calib else "training")
                                     + " clients in an order drawn by (seed, "
                                     "'export-calibration'), up to 4 random sequences each"},
        "interpreter": {"accuracy_and_parity": "OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES "
                                               "(builtin kernels, no XNNPACK)",
                        "runtime_check": "every signature of every file allocated and invoked with "
                                         "LiteRT's defaults (XNNPACK delegate) and with builtin kernels",
                        "also_measured": ("LiteRT's default (XNNPACK delegate): top-1 agreement and "
                                          f"latency with threads {list(LATENCY_THREADS)}")
                                         if options.xnnpack else None,
                        "latency_threads": list(LATENCY_THREADS) if options.xnnpack else [1],
                        "threads": 1, "latency_runs": options.latency_runs},
        "keras": {**job.ref.metrics, "logits_sha256": job.ref.logits_sha256, "logits_std": job.ref.logits_std},
        "formats": {},
        "training_model": None,
    }


def _requested_formats(job: _Job, report: dict) -> list[str]:
    """The formats to convert; known-unsupported ones are reported (unless named explicitly)."""
    kind = job.run.cfg.model.kind
    requested = [f for f in FORMATS if f in job.options.formats]
    if job.options.formats_explicit:
        return requested
    for fmt in [f for f in requested if (kind, f) in UNSUPPORTED]:
        requested.remove(fmt)
        reason = UNSUPPORTED[(kind, fmt)]
        report["formats"][fmt] = {"format": fmt, "status": "unsupported", "reason": reason}
        job.say(f"[export {job.label}] {fmt}: unsupported for {kind} ({reason})")
    return requested


def _save_sources(job: _Job, requested: list[str], work: Path, report: dict) -> dict[str, _Source]:
    """Write the SavedModels the requested formats are converted from (see ``_SOURCE_OF``).

    ``dense``: the run's weights, gather embedding; ``lookup``: the same with the embedding
    as an EMBEDDING_LOOKUP (int4); ``pruned_one_hot`` (sparse) and ``pruned`` (sparse_int8):
    the pruned weights (:func:`_pruned_weights`), one-hot resp. gather embedding.
    """
    from fl_sim.export import parity
    from fl_sim.export.signatures import save_inference_model

    needed = {_SOURCE_OF[f] for f in requested}
    model, weights = job.model, job.run.weights
    sources: dict[str, _Source] = {}
    for name, embedding in (("dense", "gather"), ("lookup", "lookup")):
        if name in needed:
            keys = save_inference_model(model, work / name, embedding=embedding)
            rep = _representative(model, job.calib, job.recurrent) if "int8" in requested and name == "dense" else None
            sources[name] = _Source(work / name, keys, job.ref, rep)
    if needed & {"pruned_one_hot", "pruned"}:
        pruned, report["pruning"] = _pruned_weights(job)
        _assign(model, pruned)
        try:
            pruned_ref = parity.KerasReference(model, job.eval_seqs)
            report["keras_pruned"] = pruned_ref.metrics
            for name, embedding in (("pruned_one_hot", "one_hot"), ("pruned", "gather")):
                if name in needed:
                    keys = save_inference_model(model, work / name, embedding=embedding)
                    rep = _representative(model, job.calib, job.recurrent) if name == "pruned" else None
                    sources[name] = _Source(work / name, keys, pruned_ref, rep)
        finally:
            _assign(model, weights)
    return sources


def _pruned_weights(job: _Job) -> tuple[list[np.ndarray], dict]:
    """The weights of the sparse formats and how they were made (the report's ``pruning``).

    A run pruned during training (to at least the converter's 30% threshold) is exported
    as it is; otherwise every prunable tensor is magnitude-pruned once, here.
    """
    from fl_sim.pruning_math import prunable_flags, prune_once, sparsity_report

    cfg, options, weights = job.run.cfg, job.options, job.run.weights
    names = [v.path for v in job.model.trainable_variables]
    flags = prunable_flags(weights, names)
    measured = sparsity_report(weights, flags)
    if cfg.pruning.enabled and measured["prunable_sparsity"] >= CONVERTER_MIN_SPARSITY:
        pruned = [w.copy() for w in weights]
        how = (f"pruned during training (pruning.enabled, target "
               f"{cfg.pruning.target_sparsity:.2f}); weights exported as they are")
    else:
        pruned, _ = prune_once(weights, options.sparsity, names)
        how = (f"one-shot magnitude pruning at export time to {options.sparsity:.0%} per "
               f"prunable tensor (the run was "
               + ("pruned, but these weights are only "
                  f"{measured['prunable_sparsity']:.0%} sparse" if cfg.pruning.enabled
                  else "not pruned") + "); an accuracy drop is expected")
    after = sparsity_report(pruned, flags)
    return pruned, {
        "how": how,
        "prunable_tensors": [n for n, f in zip(names, flags) if f],
        "never_pruned": [n for n, f in zip(names, flags) if not f],
        "prunable_sparsity_before": measured["prunable_sparsity"],
        "prunable_sparsity": after["prunable_sparsity"],
        "overall_sparsity": after["overall_sparsity"],
    }


def _export_format(job: _Job, fmt: str, src: _Source) -> tuple[dict, bytes | None]:
    """Convert one format, check and measure the file, write it; (report entry, bytes or None).

    A file that fails to convert, or does not run every signature in both LiteRT
    configurations (:data:`fl_sim.export.formats.RUNTIMES`), is reported as failed and
    not written.
    """
    from fl_sim.export.convert import ConversionError, convert_format

    say, kind = job.say, job.run.cfg.model.kind
    entry: dict = {"format": fmt, "description": DESCRIPTIONS[fmt], "file": f"model_{fmt}.tflite"}
    try:
        content, info = convert_format(src.saved_model, src.keys, fmt, src.representative)
    except ConversionError as exc:
        entry.update(status="failed", error=str(exc))
        say(f"[export {job.label}] {fmt}: FAILED ({exc})")
        return entry, None
    entry.update(info)
    try:
        entry.update(_measure(content, src.ref, job))
    except Exception as exc:  # noqa: BLE001 - the file exists but does not run
        entry.update(status="failed", error=f"{fmt}: converted, but the interpreter cannot run it: "
                                            + " ".join(str(exc).split())[:400])
        if (kind, fmt) in UNSUPPORTED:
            entry["error"] += f" (known limitation: {UNSUPPORTED[(kind, fmt)]})"
        say(f"[export {job.label}] {fmt}: FAILED ({entry['error']})")
        return entry, None
    (job.out_dir / entry["file"]).write_bytes(content)
    entry["status"] = "ok"
    say(f"[export {job.label}] {fmt}: {len(content):,} bytes, accuracy "
        f"{entry['tflite']['accuracy']:.4f}, top-1 agreement {entry['tflite']['top1_agreement']:.4f}")
    return entry, content


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


def calibration_sequences(corpus, seed: int, n: int, public: bool = False) -> tuple[np.ndarray, list[str]]:
    """Up to ``n`` training-client sequences (``public``: held-out clients'; see the module
    docstring); and their clients."""
    from fl_sim.seeding import rng as seeded_rng

    rng = seeded_rng(seed, "export-calibration")
    ids = list(corpus.eval_client_ids if public else corpus.train_client_ids)
    read = corpus.client_eval if public else corpus.client_train
    order = rng.permutation(len(ids))
    rows, clients = [], []
    total = 0
    for i in order:
        if total >= n:
            break
        seqs = read(ids[i])
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


#: Interpreter threads the XNNPACK latency is measured with (the report's headline columns).
LATENCY_THREADS = (1, 2)


def _measure(content: bytes, ref, job: _Job) -> dict:
    """Inspect the file, check it runs in both LiteRT configurations, run it: metrics, latency.

    Raises if a configuration cannot run every signature (the format is then reported as
    failed) or the file does not run with the reference resolver.
    """
    from fl_sim.export import parity
    from fl_sim.export.runtime import runtime_support
    from fl_sim.export.tflite_file import compressed_sizes, inspect_tflite, size_breakdown

    options, model = job.options, job.model
    runtime = runtime_support(content)
    broken = {rt: err for rt, err in runtime.items() if err != "ok"}
    if broken:
        raise RuntimeError("; ".join(f"{rt}: {err}" for rt, err in broken.items()))
    out: dict = {"size_bytes": len(content), "sha256": hashlib.sha256(content).hexdigest(),
                 **compressed_sizes(content), "runtime": runtime,
                 "file_info": inspect_tflite(content), "size_breakdown": size_breakdown(content)}
    out["tflite"] = parity.evaluate_sequence(content, ref, "reference")
    x = ref.inputs[:1] if len(ref.inputs) else np.zeros((1, model.inputs[0].shape[1]), np.int32)
    calls = {"sequence": {"tokens": x}}
    if job.recurrent:
        from fl_sim.models import initial_state

        h, c = initial_state(model, 1)
        calls["step"] = {"token": np.array([x[0, 0]], np.int32), "h": h, "c": c}
        out.update(parity.step_parity(content, ref, (h.shape, c.shape), options.step_parity_sequences))
    per_token = "step" if job.recurrent else "sequence"

    def timings(resolver: str, threads: int) -> dict:
        t = {f"{sig}_ms": parity.latency_ms(content, sig, inputs, options.latency_runs, resolver,
                                            num_threads=threads) for sig, inputs in calls.items()}
        t["per_token_ms"] = t[f"{per_token}_ms"]
        return t

    lat = timings("reference", 1)
    if options.xnnpack:
        out["xnnpack_top1_agreement"] = parity.top1_agreement(content, ref, "xnnpack")
        lat["xnnpack"] = {str(n): timings("xnnpack", n) for n in LATENCY_THREADS}
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


def _training_model(job: _Job, work: Path) -> dict:
    """Convert the on-device training model and smoke-test it in the interpreter."""
    from fl_sim.export import parity
    from fl_sim.export.convert import convert_training
    from fl_sim.export.signatures import FLEX_TRAINING_SIGNATURES, save_training_model
    from fl_sim.export.tflite_file import inspect_tflite

    model, cfg, calib, out_dir, say, label = (job.model, job.run.cfg, job.calib, job.out_dir,
                                              job.say, job.label)
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
    entry["runtime"] = {"needs": "the Flex delegate (select TF ops) for "
                                 + ", ".join(f"`{k}`" for k in sorted(entry["flex_ops"]))
                                 if entry["flex_ops"] else "builtin ops only",
                        "builtin_signatures": "LiteRT's default configuration"}
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
