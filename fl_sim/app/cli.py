"""The ``fl-sim`` command line.

Exit codes (README, "Exit codes"): 0 success, 1 a run failed, 2 a usage, config, data,
path or checkpoint error (the message names the file, key or value and what was expected;
nothing already written is touched), 130 / 143 stopped by SIGINT / SIGTERM
(fl_sim.app.stopping; resumable, the message says how).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fl_sim.app.preflight import DataProblem, check_data_early
from fl_sim.config import ConfigError, load_experiment

EPILOG = """examples:
  fl-sim run experiments/demo.toml
  fl-sim run experiments/cifg.toml --set client.lr=0.3 --rounds 5 --out /tmp/results
  fl-sim run experiments/demo.toml --set data.source=jsonl --set data.path=my.jsonl
  fl-sim run --resume results/demo/20261123-101500-s0
  fl-sim sweep experiments/sweeps/dp_frontier.toml
  fl-sim export results/demo/20261123-101500-s0
  fl-sim compare results/demo/20261123-101500-s0_1_2 --metric word_top1 --metric perplexity
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fl-sim", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Federated next-word prediction on Flower: simulate, compare and inspect runs.",
        epilog=EPILOG)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser(
        "run", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="run an experiment in Flower's simulation runtime",
        description="Run an experiment (a TOML file under experiments/) in Flower's simulation "
                    "runtime. Results go to <output_dir>/<experiment>/<run_id>/: "
                    "config.resolved.toml, manifest.json, metrics.jsonl, checkpoints/, plots/, "
                    "tensorboard/ and summary.md. With experiment.seeds, one seed-<s>/ run per "
                    "seed and a summary over seeds (mean ± 95% CI, paired verdicts).",
        epilog=EPILOG)
    run.add_argument("experiment", nargs="?", help="experiment TOML file")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                     help="override a config value (repeatable), validated like the file")
    run.add_argument("--rounds", type=int, help="shorthand for --set experiment.rounds=N")
    run.add_argument("--out", help="root folder for run directories (default: experiment.output_dir)")
    run.add_argument("--workers", type=int, help="shorthand for --set simulation.num_workers=N")
    run.add_argument("--resume", metavar="RUN_DIR",
                     help="continue a stopped run from its last checkpoint (same config and seed)")
    run.add_argument("--verbose", action="store_true", help="show Flower and Ray logs")

    sweep = sub.add_parser(
        "sweep", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="run a utility-privacy sweep (a grid of full runs) and plot its frontier",
        description="Run every point of a sweep file (noise multipliers or target epsilons, per "
                    "model, plus a non-private reference) as its own run, then write "
                    "sweep_results.csv/.jsonl/.md and frontier.png (accuracy and perplexity vs "
                    "epsilon). Resumable point by point.",
        epilog="examples:\n  fl-sim sweep experiments/sweeps/dp_frontier.toml\n"
               "  fl-sim sweep --resume results/dp_frontier/20261123-101500\n")
    sweep.add_argument("sweep_file", nargs="?", help="sweep TOML file")
    sweep.add_argument("--out", help="root folder (default: the base experiment's output_dir)")
    sweep.add_argument("--resume", metavar="SWEEP_DIR", help="continue an interrupted sweep")
    sweep.add_argument("--models", help="run only these models' points (comma-separated), e.g. one "
                       "model per machine or core; another process can run the rest with --resume")
    sweep.add_argument("--verbose", action="store_true", help="show Flower and Ray logs")

    cmp = sub.add_parser(
        "compare", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="compare finished runs (experiments, seeds, machines): mean ± CI, paired differences",
        description="Compare finished runs. Each RUN_DIR is a run directory (a plain run, a "
                    "comparison or a multi-seed run). Runs are grouped by model (and experiment, "
                    "when they differ), or with --by run by RUN_DIR; every group gets the mean, "
                    "sample sd and 95% t-interval of each metric over its runs (seeds), and every "
                    "pair of groups the difference, paired by seed when the seeds match one to "
                    "one, else Welch's interval. Values come from each run's metrics.jsonl (its "
                    "final row). Writes compare.md, compare.csv, compare.json and compare.png.",
        epilog="examples:\n  fl-sim compare results/demo/20261201-090000-s0_1_2\n"
               "  fl-sim compare results/cifg/*-s0 results/si_cifg/*-s0 --metric word_top3\n"
               "  fl-sim compare machineA/run machineB/run --by run --out /tmp/cmp\n")
    cmp.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="finished run directories")
    cmp.add_argument("--metric", dest="metrics", action="append", metavar="NAME",
                     help="metric to compare (repeatable; default: word_top1 and word_top3); a short "
                          "name such as word_top1, smoothed_word_top1, accuracy_no_oov_eos, "
                          "perplexity, or a final-row key such as eval_word_top1")
    cmp.add_argument("--by", choices=("model", "run"), default="model",
                     help="group runs by model (default) or by RUN_DIR argument")
    cmp.add_argument("--out", help="output folder (default: results/compare/<UTC time>)")

    from fl_sim.export.cli import add_export_parser  # no TensorFlow import until it runs

    add_export_parser(sub)

    from fl_sim.app.cluster import add_parser as add_cluster_parser

    add_cluster_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from fl_sim.app import stopping

    stopping.install()
    try:
        return _dispatch(argv)
    except stopping.Interrupted as exc:  # SIGINT / SIGTERM: exit 130 / 143, resumable
        return stopping.finish(exc)


def _dispatch(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "verbose", False):
        # Must be set before TensorFlow is first imported (here and in Ray's workers).
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "run":
        return cmd_run(args, parser)
    if args.command == "sweep":
        return cmd_sweep(args)
    if args.command == "compare":
        return cmd_compare(args)
    if args.command == "cluster":
        from fl_sim.app.cluster import cmd_cluster

        return cmd_cluster(args)
    if args.command == "export":
        from fl_sim.export.cli import run_export

        return run_export(args)
    return 2


def _usage_error(message: str) -> int:
    print(f"fl-sim: error: {message}", file=sys.stderr)
    return 2


def cmd_run(args, parser) -> int:
    from fl_sim import results

    overrides = list(args.overrides)
    if args.rounds is not None:
        overrides.append(f"experiment.rounds={args.rounds}")
    if args.workers is not None:
        overrides.append(f"simulation.num_workers={args.workers}")
    try:
        if args.resume:
            if args.experiment or overrides or args.out:
                return _usage_error("--resume takes only RUN_DIR: the run keeps its own config")
            run_dir = Path(args.resume)
            cfg_path = run_dir / "config.resolved.toml"
            if not cfg_path.is_file():
                return _usage_error(f"{run_dir}: not a run directory (no config.resolved.toml)")
            cfg = load_experiment(cfg_path)
            from fl_sim.app.resume import ResumeError, already_complete, check_resumable

            if done := already_complete(run_dir, cfg):  # nothing to redo, nothing rewritten
                print(f"fl-sim: {run_dir} is already complete ({done}); nothing to do")
                return 0
            _check_writable("--resume", run_dir)

            try:
                check_resumable(run_dir, cfg)  # the ServerApp prints the notes as it resumes
            except ResumeError as exc:
                return _usage_error(str(exc))
        else:
            if not args.experiment:
                return _usage_error("run needs an EXPERIMENT file or --resume RUN_DIR")
            cfg = load_experiment(args.experiment, overrides)
            out_key = "--out" if args.out else "experiment.output_dir"
            _check_writable(out_key, Path(args.out or cfg.experiment.output_dir))
            cfg = check_data_early(cfg)
            try:
                run_dir = results.new_run_dir(cfg, args.out)
            except OSError as exc:  # a race with the check above, or a full disk
                return _usage_error(f"{out_key}: cannot create the run directory ({exc})")
    except ConfigError as exc:
        return _usage_error(str(exc))
    except DataProblem as exc:
        return _usage_error(str(exc))
    from fl_sim.app import stopping

    stopping.resume_hint = lambda: _resume_hint(run_dir)
    print(f"fl-sim: {'resuming' if args.resume else 'starting'} {cfg.experiment.name} "
          f"-> {run_dir}", flush=True)
    from fl_sim.app.progress import for_stream
    from fl_sim.app.simulation import simulate

    try:
        with for_stream(sys.stdout) as progress:  # live bars on a terminal, lines in logs
            simulate(cfg, run_dir, resume=bool(args.resume), verbose=args.verbose, progress=progress)
    except ConfigError as exc:  # a setting the Ray cluster cannot satisfy (no worker fits)
        if not args.resume and not any(run_dir.iterdir()):
            run_dir.rmdir()  # raised before the run wrote anything
        return _usage_error(str(exc))
    except Exception as exc:  # the run's own failure: say where its files are
        _traceback_if(args.verbose)
        print(f"fl-sim: run failed: {type(exc).__name__}: {exc}\nPartial results (resumable): {run_dir}", file=sys.stderr)
        return 1
    from fl_sim.app.cluster import aborted_reason

    if reason := aborted_reason(str(run_dir)):  # server.below_min_clients = "abort"
        print(f"fl-sim: run {reason}; results: {run_dir}", file=sys.stderr)
        return 1
    return 0


def _traceback_if(verbose: bool) -> None:
    """The failure's traceback with --verbose: a one-line message ("math range error") does not
    say which part of a run raised it."""
    if verbose:
        import traceback

        traceback.print_exc()
    else:
        print("fl-sim: (--verbose shows the traceback)", file=sys.stderr)


def _resume_hint(run_dir: Path) -> str:
    if (run_dir / "config.resolved.toml").exists():
        return f"continue with: fl-sim run --resume {run_dir}"
    try:  # stopped before the run wrote anything: leave no empty run directory behind
        run_dir.rmdir()
    except OSError:
        pass
    return "the run had not started; nothing to resume"


def cmd_sweep(args) -> int:
    import json
    from datetime import datetime, timezone

    from fl_sim.app.sweep import load_sweep, run_sweep

    try:
        if args.resume:
            if args.sweep_file or args.out:
                return _usage_error("--resume takes only SWEEP_DIR")
            sweep_dir = Path(args.resume)
            meta = sweep_dir / "sweep.json"
            if not meta.is_file():
                return _usage_error(f"{sweep_dir}: not a sweep directory (no sweep.json)")
            _check_writable("--resume", sweep_dir)
            sweep = load_sweep(json.loads(meta.read_text())["source"])
        else:
            if not args.sweep_file:
                return _usage_error("sweep needs a SWEEP_FILE or --resume SWEEP_DIR")
            sweep = load_sweep(args.sweep_file)
            base = sweep.point_config(sweep.points[0])
            _check_writable("--out" if args.out else "experiment.output_dir",
                            Path(args.out or base.experiment.output_dir))
            check_data_early(base)
            root = Path(args.out or base.experiment.output_dir) / sweep.name
            stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
            sweep_dir = root / stamp
            if sweep_dir.exists():
                return _usage_error(f"{sweep_dir} already exists; wait a second or use --out")
        only = None
        if args.models:
            only = [m.strip() for m in args.models.split(",") if m.strip()]
            known = sorted({p.model for p in sweep.points})
            if not only or not set(only) <= set(known):
                return _usage_error(f"--models {args.models!r}: expected a comma-separated subset of "
                                    f"this sweep's models {known}")
    except ConfigError as exc:
        return _usage_error(str(exc))
    except DataProblem as exc:
        return _usage_error(str(exc))
    count = sum(1 for p in sweep.points if only is None or p.model in only)
    print(f"fl-sim: sweep {sweep.name}: {count} points"
          + (f" (models {', '.join(only)} of {len(sweep.points)})" if only else "")
          + f" -> {sweep_dir}", flush=True)
    from fl_sim.app import stopping

    stopping.resume_hint = f"continue with: fl-sim sweep --resume {sweep_dir}"
    try:
        from fl_sim.app.progress import for_stream

        with for_stream(sys.stdout) as progress:  # live bars on a terminal, lines in logs
            run_sweep(sweep, sweep_dir, verbose=args.verbose, progress=progress, models=only)
    except Exception as exc:
        _traceback_if(args.verbose)
        print(f"fl-sim: sweep failed: {type(exc).__name__}: {exc}\nContinue with: fl-sim sweep --resume {sweep_dir}",
              file=sys.stderr)
        return 1
    return 0


def cmd_compare(args) -> int:
    from datetime import datetime, timezone

    from fl_sim.comparison import CompareError, compare, compare_markdown, write_compare

    try:
        result, groups = compare(args.run_dirs, args.metrics or ["word_top1", "word_top3"], by=args.by)
    except CompareError as exc:
        return _usage_error(str(exc))
    out = Path(args.out) if args.out else (
        Path("results") / "compare" / datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S"))
    files = write_compare(result, groups, out)
    print(compare_markdown(result))
    print("Wrote " + ", ".join(str(f) for f in files))
    return 0


def _check_writable(key: str, path: Path) -> None:
    """A ConfigError (exit 2) naming ``key`` if nothing can be written at ``path``."""
    from fl_sim.results import unwritable

    if why := unwritable(path):
        raise ConfigError(f"{key} {path}: cannot write there: {why}")


if __name__ == "__main__":
    sys.exit(main())
