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
int4           float32         0.02    4-bit weights (16 levels per output channel),
                                       float activations
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
    "int4": ("float32", 0.02),
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
                 + (" LiteRT's default configuration (XNNPACK delegate) is measured in the `XNNPACK` columns, "
                    f"latency with {' and '.join(map(str, it.get('latency_threads', [1])))} threads "
                    "(the headline: what an app gets)." if it.get("also_measured") else ""))
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
              "Every file below loads and runs every signature both with LiteRT's defaults "
              "(`Interpreter(model_path=...)`, XNNPACK delegate on) and with builtin kernels "
              "(default delegates off); the `runs with` column is that check.", "",
              "| format | size | vs float32 | gzip -9 | gzip vs float32 | runs with | accuracy | acc. no OOV/EOS "
              "| perplexity | acc. drop vs float32 | top-1 agree (Keras) | top-1 agree (XNNPACK) | max abs Δ logit "
              "| per-token ms XNNPACK 1 thread | XNNPACK 2 threads | builtin kernels 1 thread | budget |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    base = r["formats"].get("float32", {})
    for fmt, e in r["formats"].items():
        if e.get("status") == "not requested":
            continue
        if e.get("status") == "unsupported":
            lines.append(f"| {fmt} | not exported: unsupported for {r['kind']}: {e['reason']} |" + " |" * 15)
            continue
        if e.get("status") != "ok":
            lines.append(f"| {fmt} | FAILED: {e.get('error', '')[:200]} |" + " |" * 15)
            continue
        t = e["tflite"]
        lat = e["latency"]
        b = e.get("budget")
        btxt = "—" if not b or b.get("within_budget") is None else (
            f"{'ok' if b['within_budget'] else 'EXCEEDED'} (drop {b['drop']:+.4f} vs {b['against']}, max {b['budget']})")
        x1, x2 = (lat.get("xnnpack", {}).get(n, {}).get("per_token_ms") for n in ("1", "2"))
        gz_ratio = e["gzip_bytes"] / base["size_bytes"] if base.get("size_bytes") and e.get("gzip_bytes") else None
        runs = " and ".join("XNNPACK (default)" if k == "default_xnnpack" else "builtin"
                            for k, v in e.get("runtime", {}).items() if v == "ok")
        lines.append(
            f"| {fmt} | {_kb(e['size_bytes'])} | {_f(e.get('size_ratio_to_float32'), '{:.3f}')} "
            f"| {_kb(e.get('gzip_bytes'))} | {_f(gz_ratio, '{:.3f}')} | {runs} "
            f"| {t['accuracy']:.4f} | {t['accuracy_no_oov_eos']:.4f} | {t['perplexity']:.2f} "
            f"| {_f(e.get('accuracy_drop_vs_float32'), '{:+.4f}')} | {t['top1_agreement']:.4f} "
            f"| {_f(e.get('xnnpack_top1_agreement'))} | {_f(t['max_abs_logit_diff'], '{:.2e}')} "
            f"| {_f(x1, '{:.3f}')} | {_f(x2, '{:.3f}')} | {_f(lat['per_token_ms'], '{:.3f}')} | {btxt} |")
    lines += ["", "acc. drop is the float32 file's accuracy minus this file's (positive = worse). "
              "Top-1 agreement counts non-PAD positions where the file's argmax equals the Keras model's "
              "(the pruned Keras model for the sparse formats). Per-token latency: `step` for recurrent "
              "models, one `sequence` invocation for transformers; median of the invocations, on the "
              "machine that ran the export (an Android phone's numbers differ; the ratios are what carries over). "
              "gzip -9: the file compressed, as a download or an APK's deflate would carry it."]
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
    lines += _size_section(r)
    notes = []
    for fmt, e in r["formats"].items():
        if e.get("int8_ops") == "fallback":
            notes.append(f"- {fmt}: strict int8 conversion failed ({e.get('int8_fallback_reason', '')}); "
                         "converted with float fallback for ops without int8 kernels.")
    for fmt, e in r["formats"].items():
        sp = e.get("file_info", {}).get("sparse", {})
        if sp.get("block_encoded"):
            notes.append(f"- {fmt}: block-sparse encoding chosen by the converter for "
                         f"{', '.join(sp['block_encoded'])} (these run in TFLite's sparse kernels, no DENSIFY).")
        if sp.get("block_mismatch"):
            notes.append(f"- {fmt}: WARNING: the converter's block size does not divide the tensor for "
                         f"{', '.join(sp['block_mismatch'])}; such files were observed to compute wrong "
                         "outputs (tensors narrower than 16 in sparse_int8). Check the agreement column.")
    if r["formats"].get("sparse", {}).get("file_info", {}).get("densify_ops"):
        notes.append("- sparse: weights are stored in TFLite's CSR sparse encoding (smaller file); "
                     "element-wise sparsity is expanded once by DENSIFY ops at the first invocation, so memory "
                     "and speed at run time are those of the dense model (TFLite's sparse kernels need 1x4 / 1x16 "
                     "block sparsity). The embedding is computed as a one-hot FULLY_CONNECTED in this format so "
                     "that it is sparse-encoded too.")
    if r["formats"].get("sparse_int8", {}).get("status") == "ok":
        notes.append("- sparse_int8 stores its pruned int8 weights dense: with TFLite's sparse encoding of int8 "
                     "filters, LiteRT's default XNNPACK delegate fails to prepare the file (see "
                     "docs/android_bundle.md). Its zeros show in the gzip column.")
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


def _size_section(r: dict) -> list[str]:
    """Where each file's bytes go (``size_breakdown``), and its largest constants."""
    ok = {f: e for f, e in r["formats"].items() if e.get("status") == "ok" and "size_breakdown" in e}
    if not ok:
        return []
    lines = ["", "## Where the bytes go", "",
             "Counted in the file as written (after fl_sim.export.compact: each quantization table, "
             "sparse index table and constant stored once). `converter` is the TFLite converter's (or "
             "ai-edge-quantizer's) file before that.", "",
             "| format | file | converter | constants (by dtype) | quantization params (tables) "
             "| sparse indices | graph, names, padding |",
             "|---|---|---|---|---|---|---|"]
    for fmt, e in ok.items():
        b = e["size_breakdown"]
        by = ", ".join(f"{k} {v:,}" for k, v in b["constant_bytes_by_dtype"].items())
        lines.append(f"| {fmt} | {b['file_bytes']:,} | {_f(e.get('converter_bytes'), '{:,}')} "
                     f"| {b['constant_bytes']:,} ({by}) | {b['quantization_bytes']:,} ({b['quantization_tables']}) "
                     f"| {b['sparse_index_bytes']:,} | {b['other_bytes'] + b['metadata_bytes']:,} |")
    lines += ["", "Largest constants per file (`shared`: one buffer used by every signature listed):", "",
              "| format | tensor | dtype | shape | bytes | signatures | quantization |",
              "|---|---|---|---|---|---|---|"]
    for fmt, e in ok.items():
        for row in e["size_breakdown"]["largest"][:5]:
            sigs = ", ".join(row["signatures"]) + (" (shared)" if row["shared"] else "")
            lines.append(f"| {fmt} | `{row['tensor'][:48]}` | {row['dtype']}{' sparse' if row['sparse'] else ''} "
                         f"| {row['shape']} | {row['bytes']:,} | {sigs} | {row['quantization'] or '—'} |")
    return lines


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
    lines = ["| model | format | size | vs float32 | gzip vs float32 | accuracy | acc. drop vs float32 "
             "| top-1 agree | per-token ms XNNPACK | per-token ms builtin | status |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for res in results:
        rep = res.report
        for fmt, e in rep["formats"].items():
            status = e.get("status")
            if status == "not requested":
                continue
            if status != "ok":
                why = e.get("reason") or e.get("error") or ""
                lines.append(f"| {res.name} | {fmt} | | | | | | | | | {status}: {why[:90]} |")
                continue
            base = rep["formats"].get("float32", {}).get("size_bytes")
            gz = e["gzip_bytes"] / base if base and e.get("gzip_bytes") else None
            xl = e["latency"].get("xnnpack", {}).get("1", {}).get("per_token_ms")
            b = e.get("budget") or {}
            ok = "ok" if b.get("within_budget") in (None, True) else "OVER BUDGET"
            lines.append(
                f"| {res.name} | {fmt} | {_kb(e['size_bytes'])} | {_f(e.get('size_ratio_to_float32'), '{:.2f}')} "
                f"| {_f(gz, '{:.2f}')} | {e['tflite']['accuracy']:.4f} | {_f(e.get('accuracy_drop_vs_float32'), '{:+.4f}')} "
                f"| {e['tflite']['top1_agreement']:.4f} | {_f(xl, '{:.3f}')} | {e['latency']['per_token_ms']:.3f} | {ok} |")
        tm = rep.get("training_model")
        if tm:
            if tm.get("status") == "ok":
                losses = tm["smoke_train_losses"]
                lines.append(f"| {res.name} | train | {_kb(tm['size_bytes'])} | | | | | | | "
                             f"{tm['train_step_ms']:.3f} (1 step) | ok: loss {losses[0]:.3f} → {losses[-1]:.3f} |")
            else:
                lines.append(f"| {res.name} | train | | | | | | | | | failed: {tm.get('error', '')[:90]} |")
    return "\n".join(lines)
