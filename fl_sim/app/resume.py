"""Checks before ``--resume``: is every checkpoint and metrics file a resume needs intact?

Run before Flower starts, so a damaged run directory is a usage error (exit 2) naming the
file, within a second, rather than a failure of the resumed run after its start-up. The
ServerApp makes the same choice of checkpoint (:func:`fl_sim.checkpoint.resume_point`)
when it resumes.
"""

from __future__ import annotations

from pathlib import Path

from fl_sim import checkpoint
from fl_sim.config import ExperimentConfig
from fl_sim.results import MetricsLog


class ResumeError(ValueError):
    """The run directory cannot be resumed as it is; the message says what to do."""


def model_dirs(run_dir: Path, cfg: ExperimentConfig) -> list[tuple[str, Path, ExperimentConfig]]:
    """(label, directory, config) of every model a run trains: per seed (``seed-<s>/``,
    with experiment.seeds), per compared kind (``<kind>/``), or the run directory itself."""
    from fl_sim.app.server_app import seed_config, sub_runs

    run_dir = Path(run_dir)
    seeds = [(f"seed-{s}", run_dir / f"seed-{s}", seed_config(cfg, s)) for s in cfg.experiment.seeds]
    out = []
    for tag, base, base_cfg in seeds or [("", run_dir, cfg)]:
        for name, sub_cfg in sub_runs(base_cfg):
            label = "/".join(x for x in (tag, name or sub_cfg.model.kind) if x)
            out.append((label, base / name if name else base, sub_cfg))
    return out


def check_resumable(run_dir: Path, cfg: ExperimentConfig) -> list[str]:
    """Notes on damaged files a resume will skip; raises :class:`ResumeError`."""
    run_dir = Path(run_dir)
    again = f"start the run again: fl-sim run {run_dir / 'config.resolved.toml'}"
    notes = []
    for _, sub_dir, sub_cfg in model_dirs(run_dir, cfg):
        try:
            rounds = MetricsLog(sub_dir / "metrics.jsonl").logged_rounds()
            _, problems = checkpoint.resume_point(sub_dir, rounds, sub_cfg.model.kind)
        except ValueError as exc:  # metrics.jsonl damaged mid-file
            raise ResumeError(f"{exc}; the run's metrics are damaged, so it cannot be resumed "
                              f"exactly; restore the file or {again}") from None
        except checkpoint.CheckpointError as exc:
            raise ResumeError(f"{exc}; {again}") from None
        notes += problems
    return notes


def already_complete(run_dir: Path, cfg: ExperimentConfig) -> str | None:
    """What a finished run did ("si_cifg: 60 of 60 rounds"), or None if a resume has work.

    Finished: summary.json is written and every sub-run's metrics end with its final row.
    A run aborted under server.below_min_clients = "abort" is not: a resume retries the
    round it aborted in.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "summary.json").is_file():
        return None
    done = []
    for label, sub_dir, _ in model_dirs(run_dir, cfg):
        try:
            rows = MetricsLog(sub_dir / "metrics.jsonl").rows()
        except ValueError:
            return None  # damaged: check_resumable says how
        final = rows[-1] if rows else {}
        reason = str(final.get("stopped_reason") or "")
        if final.get("type") != "final" or reason.startswith("aborted"):
            return None
        done.append(f"{label}: {final.get('rounds_completed')} of "
                    f"{final.get('rounds')} rounds" + (f", stopped early: {reason}" if reason else ""))
    return "; ".join(done)

