"""Find what to export in a run directory: config, weights (final or a checkpoint).

A plain run directory holds ``config.resolved.toml`` and ``final_weights.npz``
(``np.savez(*weights)``: ``arr_0``, ``arr_1``, ... in ``model.trainable_variables``
order) and ``checkpoints/round-XXXXX.npz``. A comparison run (``experiment.compare``)
holds one such directory per model kind, named after the kind.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fl_sim.config import ConfigError, ExperimentConfig, load_experiment


class ExportError(Exception):
    """A missing or unreadable input (run directory, config, weights): exit code 2."""


@dataclass
class RunWeights:
    run_dir: Path
    name: str                      # model kind or sub-run name
    cfg: ExperimentConfig
    weights: list[np.ndarray]
    weights_file: Path
    round: int | None              # checkpoint round; None for final_weights.npz


def load_config(run_dir: Path) -> ExperimentConfig:
    path = Path(run_dir) / "config.resolved.toml"
    if not path.is_file():
        raise ExportError(f"{run_dir}: not a run directory (no config.resolved.toml)")
    try:
        return load_experiment(path)
    except ConfigError as exc:
        raise ExportError(str(exc)) from None


def resolve_run_dir(path: Path) -> tuple[Path, str | None]:
    """A run directory, or an experiment folder (``results/<experiment>``) -> its newest run.

    Returns ``(run_dir, note)``; ``note`` says which run was picked when ``path`` was an
    experiment folder. The newest run is the last run id in name order (run ids start with
    their UTC start time) among those that finished (``summary.json``), else among all.
    """
    path = Path(path)
    if not path.is_dir():
        raise ExportError(f"{path}: no such run directory")
    if (path / "config.resolved.toml").is_file():
        return _first_seed(path, None)
    runs = sorted(p for p in path.iterdir() if (p / "config.resolved.toml").is_file())
    if not runs:
        raise ExportError(f"{path}: not a run directory (no config.resolved.toml) and no run "
                          f"directories inside it")
    finished = [p for p in runs if (p / "summary.json").is_file()]
    pick = (finished or runs)[-1]
    return _first_seed(pick, f"{path} is an experiment folder; exporting its newest run {pick}")


def _first_seed(run_dir: Path, note: str | None) -> tuple[Path, str | None]:
    """A multi-seed run (``experiment.seeds``) holds one run per seed in ``seed-<s>/``: one
    model file is exported, the first seed's (name a ``seed-<s>`` directory for another)."""
    seeds = load_config(run_dir).experiment.seeds
    if not seeds:
        return run_dir, note
    sub = run_dir / f"seed-{seeds[0]}"
    if not (sub / "config.resolved.toml").is_file():
        raise ExportError(f"{sub}: the first seed's run is missing (no config.resolved.toml)")
    said = f"{run_dir} trained seeds {list(seeds)}; exporting seed {seeds[0]} ({sub})"
    return sub, f"{note}; {said}" if note else said


def sub_runs(run_dir: Path) -> list[tuple[str, Path]]:
    """``[(name, directory)]``: one per compared model kind, or ``[("", run_dir)]``."""
    run_dir = Path(run_dir)
    cfg = load_config(run_dir)
    if not cfg.experiment.compare:
        return [("", run_dir)]
    out = []
    for kind in cfg.experiment.compare:
        sub = run_dir / kind
        if not (sub / "config.resolved.toml").is_file():
            raise ExportError(f"{sub}: comparison sub-run missing (no config.resolved.toml)")
        out.append((kind, sub))
    return out


def _resolve_checkpoint(run_dir: Path, checkpoint: str | Path) -> Path:
    p = Path(checkpoint)
    if not p.is_absolute():
        candidate = run_dir / p
        if candidate.exists():
            return candidate
        candidate = run_dir / "checkpoints" / p
        if candidate.exists():
            return candidate
    return p


def load_weights(run_dir: Path, checkpoint: str | Path | None = None) -> tuple[list[np.ndarray], Path, int | None]:
    """``(weights, file, round)`` from ``final_weights.npz`` or ``checkpoint``.

    A relative ``checkpoint`` is looked up in ``run_dir``, then ``run_dir/checkpoints``,
    then the current directory. Raises :class:`ExportError` naming the file.
    """
    run_dir = Path(run_dir)
    if checkpoint is not None:
        from fl_sim.checkpoint import CheckpointError, load

        path = _resolve_checkpoint(run_dir, checkpoint)
        if not path.is_file():
            raise ExportError(f"{path}: checkpoint not found")
        try:
            ckpt = load(path)
        except CheckpointError as exc:
            raise ExportError(str(exc)) from None
        return [np.asarray(w) for w in ckpt["weights"]], path, int(ckpt["round"])
    path = run_dir / "final_weights.npz"
    if not path.is_file():
        raise ExportError(f"{path}: not found (the run has not finished; pass --checkpoint "
                          f"{run_dir / 'checkpoints' / 'round-XXXXX.npz'} to export a checkpoint)")
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = sorted((k for k in data.files if k.startswith("arr_")), key=lambda k: int(k[4:]))
            if not keys or len(keys) != len(data.files):
                raise ValueError(f"expected arrays arr_0..arr_N, found {data.files[:5]}")
            weights = [np.asarray(data[k]) for k in keys]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise ExportError(f"{path}: not a readable weights file ({exc})") from None
    return weights, path, None


def check_weights(weights: list[np.ndarray], model, source: Path) -> None:
    """The weights must match the model's trainable variables in count, shape and dtype."""
    variables = model.trainable_variables
    if len(weights) != len(variables):
        raise ExportError(f"{source}: {len(weights)} arrays, but the {model.name} model built from "
                          f"the run's config has {len(variables)} trainable tensors")
    for i, (w, v) in enumerate(zip(weights, variables)):
        if tuple(w.shape) != tuple(v.shape):
            raise ExportError(f"{source}: array {i} ({v.path}) has shape {tuple(w.shape)}, "
                              f"the model expects {tuple(v.shape)}")
        if not np.issubdtype(w.dtype, np.floating):
            raise ExportError(f"{source}: array {i} ({v.path}) has dtype {w.dtype}, expected float")
        if not np.all(np.isfinite(w)):
            raise ExportError(f"{source}: array {i} ({v.path}) contains NaN or infinity")


def load_run(run_dir: Path, name: str = "", checkpoint: str | Path | None = None) -> RunWeights:
    cfg = load_config(run_dir)
    weights, path, rnd = load_weights(run_dir, checkpoint)
    return RunWeights(Path(run_dir), name or cfg.model.kind, cfg, weights, path, rnd)
