"""report.md + report.json: size, sparsity, accuracy, agreement and latency per format.

Accuracy budgets (``BUDGETS``): the largest accepted drop in next-word accuracy (absolute,
measured through the interpreter on the held-out sample) of a format against its
reference, i.e. the TFLite file with the same weights and no quantization:

=============  ==============  ======  ==================================================
format         reference       budget  why
=============  ==============  ======  ==================================================
float16        float32         0.01    float16 weights only; expected ~0
dynamic_int8   float32         0.01    int8 weights, float activations
int8           float32         0.03    int8 activations too, including the recurrent
                                       state; SI-CIFG's max-normalisation is sensitive
sparse         Keras (pruned)  0.005   pure re-encoding of the pruned weights: ~exact
sparse_int8    sparse          0.03    same as int8, on the pruned model
=============  ==============  ======  ==================================================

The drop caused by pruning itself (``sparse`` vs ``float32``) has no budget: it depends
on the run (one-shot export-time pruning of an unpruned model costs accuracy, and is
reported as such). ``within_budget`` is informational in the report; the tests assert it.
"""

from __future__ import annotations

import json
from pathlib import Path

BUDGETS = {
    "float16": ("float32", 0.01),
    "dynamic_int8": ("float32", 0.01),
    "int8": ("float32", 0.03),
    "sparse": ("keras_pruned", 0.005),
    "sparse_int8": ("sparse", 0.03),
}


def evaluate_budgets(report: dict) -> None:
    fm = report["formats"]
    for fmt, (against, budget) in BUDGETS.items():
        e = fm.get(fmt, {})
        if e.get("status") != "ok":
            continue
        acc = e["tflite"]["accuracy"]
        if against == "keras_pruned":
            ref_acc = report.get("keras_pruned", {}).get("accuracy")
        else:
            ref_acc = fm.get(against, {}).get("tflite", {}).get("accuracy")
        if ref_acc is None:
            e["budget"] = {"against": against, "budget": budget, "drop": None, "within_budget": None}
            continue
        drop = ref_acc - acc
        e["budget"] = {"against": against, "budget": budget, "drop": drop,
                       "within_budget": bool(drop <= budget + 1e-12)}


def _f(x, fmt="{:.4f}", none="—"):
    if x is None:
        return none
    try:
        return fmt.format(x)
    except (TypeError, ValueError):
        return str(x)


def _kb(n):
    return "—" if n is None else f"{n / 1024:,.1f} KiB"


def markdown(report: dict) -> str:
    r = report
    lines = [f"# TFLite export: {r['model']} ({r['kind']})", ""]
    lines.append(f"Weights: `{r['weights_file']}`" + (f" (round {r['checkpoint_round']})" if r.get("checkpoint_round") else "")
                 + f"; {r['parameters']:,} parameters, vocabulary {r['vocab_size']}, seq_len {r['seq_len']}.")
    lines.append(f"Signatures: {', '.join('`' + s + '`' for s in r['signatures'])}. Step: {r['step_signature']}.")
    ev, cal = r["evaluation"], r["calibration"]
    lines.append(f"Accuracy/perplexity: measured by running each .tflite in the LiteRT interpreter on "
                 f"{ev['sequences']} sequences ({ev['targets']:,} targets) of {ev['clients']} held-out clients "
                 f"(cap {ev['cap']}; {ev['selection']}).")
    lines.append(f"int8 calibration: {cal['sequences']} training-client sequences from {len(cal['clients'])} "
                 f"training clients ({cal['selection']}).")
    it = r["interpreter"]
    lines.append(f"Interpreter: {it['accuracy_and_parity']} for accuracy and parity; "
                 f"{it['threads']} thread; latency = median of {it['latency_runs']} invocations on this machine."
                 + (" The default XNNPACK delegate is measured in the `XNNPACK` columns." if it.get("also_measured") else ""))
    k = r["keras"]
    lines.append(f"Keras reference (same sample): accuracy {k['accuracy']:.4f}, accuracy without OOV/EOS "
                 f"{k['accuracy_no_oov_eos']:.4f}, perplexity {k['perplexity']:.2f}.")
    if "pruning" in r:
        p = r["pruning"]
        kp = r.get("keras_pruned", {})
        lines.append(f"Sparse formats: {p['how']}. Prunable-tensor sparsity {p['prunable_sparsity']:.1%} "
                     f"(overall {p['overall_sparsity']:.1%}); never pruned: "
                     f"{', '.join(p['never_pruned']) or 'none'}. Keras accuracy of the pruned model "
                     f"{kp.get('accuracy', float('nan')):.4f}.")
    lines += ["", "## Formats", "",
              "| format | size | vs float32 | sparse-encoded weights | zeros in them | accuracy | acc. no OOV/EOS | perplexity "
              "| acc. drop vs float32 | top-1 agree (Keras) | top-1 agree (XNNPACK) | max abs Δ logit | per-token ms | per-token ms (XNNPACK) | budget |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for fmt, e in r["formats"].items():
        if e.get("status") == "not requested":
            continue
        if e.get("status") == "unsupported":
            lines.append(f"| {fmt} | not exported: unsupported for {r['kind']}: {e['reason']} |" + " |" * 13)
            continue
        if e.get("status") != "ok":
            lines.append(f"| {fmt} | FAILED: {e.get('error', '')[:200]} |" + " |" * 13)
            continue
        sp = e["file_info"]["sparse"]
        t = e["tflite"]
        lat = e["latency"]
        b = e.get("budget")
        btxt = "—" if not b or b.get("within_budget") is None else (
            f"{'ok' if b['within_budget'] else 'EXCEEDED'} (drop {b['drop']:+.4f} vs {b['against']}, max {b['budget']})")
        xl = lat.get("step_ms_xnnpack", lat.get("sequence_ms_xnnpack"))
        xa = "fails (notes)" if e.get("xnnpack_error") else _f(e.get("xnnpack_top1_agreement"))
        lines.append(
            f"| {fmt} | {_kb(e['size_bytes'])} | {_f(e.get('size_ratio_to_float32'), '{:.3f}')} "
            f"| {sp['sparse_fraction_of_weights']:.1%} ({sp['num_tensors']} tensors) | "
            f"{_f(sp['encoded_sparsity'] if sp['num_tensors'] else None, '{:.1%}')} "
            f"| {t['accuracy']:.4f} | {t['accuracy_no_oov_eos']:.4f} | {t['perplexity']:.2f} "
            f"| {_f(e.get('accuracy_drop_vs_float32'), '{:+.4f}')} | {t['top1_agreement']:.4f} "
            f"| {xa} | {_f(t['max_abs_logit_diff'], '{:.2e}')} "
            f"| {_f(lat['per_token_ms'], '{:.3f}')} | {_f(xl, '{:.3f}')} | {btxt} |")
    lines += ["", "acc. drop is the float32 file's accuracy minus this file's (positive = worse). "
              "Top-1 agreement counts non-PAD positions where the file's argmax equals the Keras model's "
              "(the pruned Keras model for the sparse formats). Per-token latency: `step` for recurrent "
              "models, one `sequence` invocation for transformers."]
    rec = [f for f, e in r["formats"].items() if e.get("status") == "ok" and "step_max_abs_logit_diff" in e]
    if rec:
        lines += ["", "## Streaming `step` signature", "",
                  "| format | sequences fed token by token | max abs Δ logit vs Keras | top-1 agree | step ms | sequence ms |",
                  "|---|---|---|---|---|---|"]
        for f in rec:
            e = r["formats"][f]
            lines.append(f"| {f} | {e['step_sequences']} | {e['step_max_abs_logit_diff']:.2e} | "
                         f"{e['step_top1_agreement']:.4f} | {e['latency']['step_ms']:.3f} | "
                         f"{e['latency']['sequence_ms']:.3f} |")
    lines += ["", "## What the files contain", "",
              "| format | converter | int8 ops | weights by dtype | DENSIFY ops | index bytes | convert s |",
              "|---|---|---|---|---|---|---|"]
    for fmt, e in r["formats"].items():
        if e.get("status") != "ok":
            continue
        fi = e["file_info"]
        by = ", ".join(f"{k} {v:,}" for k, v in fi["weights"]["by_dtype"].items())
        lines.append(f"| {fmt} | {e['description']} | {e.get('int8_ops', '—')} | {by} | {fi['densify_ops']} "
                     f"| {fi['sparse']['index_bytes']:,} | {e['convert_seconds']} |")
    notes = []
    for fmt, e in r["formats"].items():
        if e.get("int8_ops") == "fallback":
            notes.append(f"- {fmt}: strict int8 conversion failed ({e.get('int8_fallback_reason', '')}); "
                         "converted with float fallback for ops without int8 kernels.")
    for fmt, e in r["formats"].items():
        if e.get("xnnpack_error"):
            notes.append(f"- {fmt}: the default XNNPACK delegate cannot run this file ({e['xnnpack_error']}); "
                         "use OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES (Android: "
                         "Interpreter.Options().setUseXNNPACK(false)).")
        sp = e.get("file_info", {}).get("sparse", {})
        if sp.get("block_encoded"):
            notes.append(f"- {fmt}: block-sparse encoding chosen by the converter for "
                         f"{', '.join(sp['block_encoded'])} (these run in TFLite's sparse kernels, no DENSIFY).")
        if sp.get("block_mismatch"):
            notes.append(f"- {fmt}: WARNING: the converter's block size does not divide the tensor for "
                         f"{', '.join(sp['block_mismatch'])}; such files were observed to compute wrong "
                         "outputs (tensors narrower than 16 in sparse_int8). Check the agreement column.")
    if any(r["formats"].get(f, {}).get("file_info", {}).get("densify_ops") for f in ("sparse", "sparse_int8")):
        notes.append("- Sparse formats: weights are stored in TFLite's CSR sparse encoding (smaller file); "
                     "element-wise sparsity is expanded once by DENSIFY ops at the first invocation, so memory "
                     "and speed at run time are those of the dense model (TFLite's sparse kernels need 1x4 / 1x16 "
                     "block sparsity). The embedding is computed as a one-hot FULLY_CONNECTED in these formats so "
                     "that it is sparse-encoded too.")
    if r["kind"] in ("cifg", "si_cifg") and any(r["formats"].get(f, {}).get("status") == "ok" for f in ("int8", "sparse_int8")):
        notes.append("- int8 files of recurrent models hold two int8 copies of the embedding table (one per "
                     "signature: the converter calibrates each signature's gather separately); a step-only "
                     "deployment would be smaller by one table.")
    if notes:
        lines += ["", "## Notes", "", *notes]
    tm = r.get("training_model")
    if tm:
        lines += ["", "## On-device training model (`model_train.tflite`, float32)", ""]
        if tm.get("status") != "ok":
            lines.append(f"FAILED: {tm.get('error')}")
        else:
            lines.append(f"{_kb(tm['size_bytes'])}; signatures {', '.join('`' + s + '`' for s in tm['signatures'])}; "
                         f"`train` batch {tm['batch_size']} (tokens int32 [{tm['batch_size']}, {r['seq_len'] + 1}], lr float32 []), "
                         f"one plain-SGD step of the clients' masked cross-entropy.")
            lines.append(f"Builtin ops only: {', '.join(tm['builtin_only_signatures'])}. Need the Flex delegate "
                         f"(org.tensorflow:tensorflow-lite-select-tf-ops on Android): "
                         + (", ".join(f"`{k}` ({', '.join(v)})" for k, v in tm["flex_ops"].items()) or "none") + ".")
            lines.append(f"Smoke test here: `get_weights` equals the exported weights (max abs diff "
                         f"{tm['get_weights_max_abs_diff']:.1e}); 5 `train` steps on one batch of training-client "
                         f"sequences at lr {tm['lr_default']}: loss "
                         + " → ".join(f"{x:.3f}" for x in tm["smoke_train_losses"])
                         + f"; one step {tm['train_step_ms']} ms.")
            for k, v in tm.get("flex_signatures_here", {}).items():
                lines.append(f"`{k}`: {v}.")
    lines.append("")
    return "\n".join(lines)


def write_report(out_dir: Path, report: dict) -> None:
    out_dir = Path(out_dir)
    (out_dir / "report.json").write_text(json.dumps(report, indent=1, default=_json_default) + "\n")
    (out_dir / "report.md").write_text(markdown(report))


def _json_default(o):
    import numpy as np

    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o))


def write_combined_report(out_dir: Path, run_dir: Path, results: list) -> None:
    """A comparison run's table: every (model, format) row, with links to each report."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"# TFLite export: {Path(run_dir).name}", "",
             "| model | format | size | vs float32 | sparse-encoded | accuracy | perplexity | acc. drop vs float32 "
             "| top-1 agree (Keras) | per-token ms | status |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    combined = {"run_dir": str(run_dir), "models": {}}
    for res in results:
        rep = res.report
        combined["models"][res.name] = {"export_dir": str(res.out_dir), "report": rep}
        for fmt, e in rep["formats"].items():
            if e.get("status") == "not requested":
                continue
            if e.get("status") == "unsupported":
                lines.append(f"| {res.name} | {fmt} | | | | | | | | | unsupported (see report) |")
                continue
            if e.get("status") != "ok":
                lines.append(f"| {res.name} | {fmt} | | | | | | | | | FAILED |")
                continue
            sp = e["file_info"]["sparse"]
            lines.append(
                f"| {res.name} | {fmt} | {_kb(e['size_bytes'])} | {_f(e.get('size_ratio_to_float32'), '{:.3f}')} "
                f"| {sp['sparse_fraction_of_weights']:.0%} | {e['tflite']['accuracy']:.4f} | {e['tflite']['perplexity']:.2f} "
                f"| {_f(e.get('accuracy_drop_vs_float32'), '{:+.4f}')} | {e['tflite']['top1_agreement']:.4f} "
                f"| {e['latency']['per_token_ms']:.3f} | ok |")
    lines += ["", "Per-model details: " + ", ".join(f"`{r.out_dir / 'report.md'}`" for r in results), ""]
    (out_dir / "report.md").write_text("\n".join(lines))
    (out_dir / "report.json").write_text(json.dumps(combined, indent=1, default=_json_default) + "\n")


def summary_table(results: list) -> str:
    """The size / accuracy / latency table ``fl-sim export`` prints (one row per model and format)."""
    lines = ["| model | format | size | vs float32 | encoded sparsity | accuracy | acc. drop vs float32 "
             "| top-1 agree | per-token ms | status |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for res in results:
        rep = res.report
        for fmt, e in rep["formats"].items():
            status = e.get("status")
            if status == "not requested":
                continue
            if status != "ok":
                why = e.get("reason") or e.get("error") or ""
                lines.append(f"| {res.name} | {fmt} | | | | | | | | {status}: {why[:90]} |")
                continue
            sp = e["file_info"]["sparse"]
            enc = f"{sp['encoded_sparsity']:.0%}" if sp["num_tensors"] else "dense"
            b = e.get("budget") or {}
            ok = "ok" if b.get("within_budget") in (None, True) else "OVER BUDGET"
            lines.append(
                f"| {res.name} | {fmt} | {_kb(e['size_bytes'])} | {_f(e.get('size_ratio_to_float32'), '{:.2f}')} "
                f"| {enc} | {e['tflite']['accuracy']:.4f} | {_f(e.get('accuracy_drop_vs_float32'), '{:+.4f}')} "
                f"| {e['tflite']['top1_agreement']:.4f} | {e['latency']['per_token_ms']:.3f} | {ok} |")
        tm = rep.get("training_model")
        if tm:
            if tm.get("status") == "ok":
                losses = tm["smoke_train_losses"]
                lines.append(f"| {res.name} | train | {_kb(tm['size_bytes'])} | | | | | | "
                             f"{tm['train_step_ms']:.3f} (1 step) | ok: loss {losses[0]:.3f} → {losses[-1]:.3f} |")
            else:
                lines.append(f"| {res.name} | train | | | | | | | | failed: {tm.get('error', '')[:90]} |")
    return "\n".join(lines)
