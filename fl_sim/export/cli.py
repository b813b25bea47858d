"""``fl-sim export RUN_DIR``: TFLite files, Android bundle and a size/accuracy/latency report.

Wire into the main CLI with::

    from fl_sim.export.cli import add_export_parser, run_export
    add_export_parser(subparsers)          # in build_parser()
    if args.command == "export": return run_export(args)

or run it alone: ``python -m fl_sim.export.cli RUN_DIR [...]``.

Exit codes: 0 every requested format was written; 1 a requested format (or the training
model) failed to convert (the report says why; everything else is still written); 2 a
usage error or a missing / unreadable run directory, config, data, checkpoint or
final_weights.npz (the message names the file).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fl_sim.export.formats import FORMATS
from fl_sim.export.pipeline import DEFAULT_SPARSITY

DESCRIPTION = (
    "Convert a finished run's model to TFLite (formats: " + ", ".join(FORMATS) + ") and write "
    "RUN_DIR/export/: the .tflite files (recurrent models: `step` and `sequence` signatures; "
    "transformers: `sequence`), model_train.tflite (on-device training signatures), vocab.txt, "
    "metadata.json, report.md and report.json (size, encoded sparsity, accuracy and perplexity "
    "measured in the LiteRT interpreter on held-out clients, top-1 agreement with Keras, latency). "
    "A comparison run exports every sub-run and writes a combined report.")

EPILOG = """examples:
  fl-sim export results/demo/20261123-101500-s0
  fl-sim export results/demo                      # the newest finished run of experiment "demo"
  fl-sim export RUN_DIR --formats float32,int8 --out /tmp/bundle
  fl-sim export RUN_DIR --checkpoint checkpoints/round-00020.npz
"""


def _formats(text: str) -> tuple[str, ...]:
    items = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list of formats")
    bad = [s for s in items if s not in FORMATS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown format(s) {', '.join(bad)}; expected some of "
                                         f"{', '.join(FORMATS)}")
    return items


def _checked(parse, ok, expected: str):
    """An argparse ``type=`` that parses with ``parse`` and accepts values where ``ok``."""
    def check(text: str):
        try:
            v = parse(text)
        except ValueError:
            v = None
        if v is None or not ok(v):
            raise argparse.ArgumentTypeError(f"{text!r}: expected {expected}")
        return v
    return check


_fraction = _checked(float, lambda v: 0.0 < v < 1.0, "a number in (0, 1)")
_positive = _checked(int, lambda v: v >= 1, "a positive integer")


def configure_parser(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("run_dir", metavar="RUN_DIR",
                   help="a run directory (a comparison run exports every model), or an experiment "
                        "folder such as results/demo, meaning its newest finished run")
    p.add_argument("--formats", type=_formats, default=None, metavar="LIST",
                   help="comma-separated formats (default: every format the model supports, of "
                        + ",".join(FORMATS) + "; unsupported ones are listed in the report with "
                        "the reason; named here, they are attempted and a failure exits 1)")
    p.add_argument("--checkpoint", metavar="PATH",
                   help="export this checkpoint instead of final_weights.npz (relative paths are "
                        "looked up in RUN_DIR, RUN_DIR/checkpoints, then the current directory)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: RUN_DIR/export; a comparison "
                                                "run gets one sub-folder per model)")
    p.add_argument("--sparsity", type=_fraction, default=DEFAULT_SPARSITY, metavar="S",
                   help="one-shot magnitude-pruning sparsity for the sparse formats when the run was "
                        f"not pruned (default {DEFAULT_SPARSITY})")
    p.add_argument("--eval-sequences", type=_positive, default=500, metavar="N",
                   help="cap on held-out sequences run through each .tflite (default 500)")
    p.add_argument("--calibration-sequences", type=_positive, default=100, metavar="N",
                   help="training-client sequences for int8 calibration (default 100)")
    p.add_argument("--latency-runs", type=_positive, default=100, metavar="N",
                   help="invocations per latency median (default 100)")
    p.add_argument("--no-training-model", dest="training", action="store_false",
                   help="skip model_train.tflite (on-device training signatures)")
    p.add_argument("--no-xnnpack", dest="xnnpack", action="store_false",
                   help="skip the extra measurements with the default XNNPACK delegate")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    return p


def add_export_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``export`` sub-command to the ``fl-sim`` parser's subparsers."""
    p = subparsers.add_parser("export", formatter_class=argparse.RawDescriptionHelpFormatter,
                              help="export a run's model to TFLite with an Android bundle and report",
                              description=DESCRIPTION, epilog=EPILOG)
    return configure_parser(p)


def run_export(args: argparse.Namespace) -> int:
    """Run ``fl-sim export`` for parsed ``args``; return the exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from fl_sim.export.pipeline import ExportOptions, export_run
    from fl_sim.export.runs import ExportError

    quiet = getattr(args, "quiet", False)
    options = ExportOptions(
        formats=tuple(args.formats or FORMATS), formats_explicit=args.formats is not None,
        checkpoint=args.checkpoint,
        out=Path(args.out) if args.out else None, sparsity=args.sparsity,
        calibration_sequences=args.calibration_sequences, eval_sequences=args.eval_sequences,
        latency_runs=args.latency_runs, training=args.training, xnnpack=args.xnnpack,
        progress=(lambda s: None) if quiet else (lambda s: print(s, flush=True)))
    try:
        results = export_run(Path(args.run_dir), options)
    except ExportError as exc:
        print(f"fl-sim export: error: {exc}", file=sys.stderr)
        return 2
    from fl_sim.export.report import summary_table

    print(summary_table(results))
    failed = []
    for res in results:
        print(f"fl-sim export: {res.name or res.report['kind']}: {res.out_dir / 'report.md'}")
        failed += [f"{res.name}:{f}" for f in res.failed_formats]
        tm = res.report.get("training_model")
        if tm and tm.get("status") == "failed":
            failed.append(f"{res.name}:train")
    if failed:
        print(f"fl-sim export: requested format(s) failed: {', '.join(failed)} (see the report)",
              file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = configure_parser(argparse.ArgumentParser(
        prog="fl-sim export", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=DESCRIPTION, epilog=EPILOG))
    return run_export(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
