"""The Android bundle: vocab.txt and metadata.json next to the .tflite files.

``metadata.json`` is everything an app needs besides the model files: tokenizer rules
(the same as :mod:`fl_sim.data.tokenizer`), special-token ids, seq_len, every signature's
input/output tensor names, shapes, dtypes and quantization parameters (read back from each
file through the interpreter), the model config, the run it came from, and the SHA-256 of
every file in the bundle (``files``; metadata.json itself is the one file not listed).
See docs/android_bundle.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from fl_sim.data.tokenizer import _TOKEN_RE
from fl_sim.data.vocab import BOS_ID, EOS_ID, OOV_ID, PAD_ID, SPECIAL_TOKENS

BUNDLE_VERSION = 1


def tokenizer_rules() -> dict:
    return {
        "lowercase": True,
        "lowercase_note": "Python str.lower() (Unicode default case mapping; Kotlin: lowercase(Locale.ROOT))",
        "replace": {"\u2019": "'"},
        "token_regex": _TOKEN_RE.pattern,
        "token_regex_note": "find all matches, in order; [^\\W_] means a Unicode letter or digit. "
                            "A word is letters/digits optionally joined by inner ' or -; "
                            "each of . , ; : ! ? is a token of its own; everything else is dropped.",
        "punctuation_tokens": [".", ",", ";", ":", "!", "?"],
        "sentence_end_tokens": [".", "!", "?"],
        "sentence": "[BOS] + ids (+ [EOS] after the sentence end): start every sentence with BOS; "
                    "after a sentence-final . ! ? the next sentence starts again from BOS (and zero "
                    "state for `step`)",
        "unknown_word": "ids of words not in vocab.txt are the OOV id",
        "suggestions": "rank logits over ids >= 4 (words); ids 0-3 are special tokens",
    }


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_bundle(out_dir: Path, corpus, cfg, run, report: dict, contents: dict[str, bytes], model) -> dict:
    """Write vocab.txt and metadata.json; return the metadata."""
    from fl_sim.export.parity import io_details

    out_dir = Path(out_dir)
    corpus.vocab.save(out_dir / "vocab.txt")
    models = {}
    for fmt, content in contents.items():
        e = report["formats"][fmt]
        models[fmt] = {"file": e["file"], "signatures": io_details(content),
                       "int8_ops": e.get("int8_ops"),
                       "description": e["description"],
                       # Checked by loading and running every signature in both (fl_sim.export.runtime).
                       "runtime": {"options_needed": "none: LiteRT's defaults (XNNPACK delegate)",
                                   "checked": e["runtime"]}}
    tm = report.get("training_model")
    if tm and tm.get("status") == "ok":
        content = (out_dir / tm["file"]).read_bytes()
        models["train"] = {"file": tm["file"], "signatures": io_details(content),
                           "flex_signatures": sorted(tm["flex_ops"]),
                           "weight_order": [v.path for v in model.trainable_variables],
                           "runtime": {"options_needed": tm["runtime"]["needs"]},
                           "description": "float32 on-device training model (resource variables)"}
    files = {}
    for p in sorted(out_dir.iterdir()):
        if p.is_file() and (p.suffix == ".tflite" or p.name == "vocab.txt"):
            files[p.name] = {"sha256": _sha256(p), "bytes": p.stat().st_size}
    meta = {
        "bundle_version": BUNDLE_VERSION,
        "run_id": report.get("run_id"), "run_dir": str(run.run_dir), "model_name": report["model"],
        "weights_file": str(run.weights_file), "checkpoint_round": run.round,
        "model_kind": cfg.model.kind, "model_config": dataclasses.asdict(cfg.model),
        "recurrent": cfg.model.kind in ("cifg", "si_cifg"),
        "vocab_file": "vocab.txt", "vocab_size": corpus.vocab.size, "seq_len": corpus.seq_len,
        "special_tokens": {"pad": {"id": PAD_ID, "token": SPECIAL_TOKENS[PAD_ID]},
                           "oov": {"id": OOV_ID, "token": SPECIAL_TOKENS[OOV_ID]},
                           "bos": {"id": BOS_ID, "token": SPECIAL_TOKENS[BOS_ID]},
                           "eos": {"id": EOS_ID, "token": SPECIAL_TOKENS[EOS_ID]}},
        "tokenizer": tokenizer_rules(),
        "state": ({"h": [1, model.get_layer("cifg").cell.out_dim], "c": [1, model.get_layer("cifg").cell.units],
                   "initial": "zeros"} if cfg.model.kind in ("cifg", "si_cifg") else None),
        "models": models,
        "data": {"source": cfg.data.source, "vocab_size_config": cfg.data.vocab_size,
                 "vocab_source": cfg.data.vocab_source},
        # What the run's (epsilon, delta) covers here (its privacy_statement.md lists each file).
        "privacy": None if not cfg.privacy.enabled else {
            "dp": True, "statement": "privacy_statement.md in the run directory",
            "vocab_covered": cfg.data.vocab_source != "train",
            "calibration_source": report["calibration"]["source"],
            "calibrated_files_covered": bool(report["calibration"]["covered_by_privacy_statement"]),
        },
        "files": files,
    }
    (out_dir / "metadata.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta
