"""Atomic checkpoints: global weights, server optimizer state, round and extra state.

Each checkpoint is one .npz written to a temporary name and renamed into place, then
``latest.json`` is replaced the same way, so a crash at any moment leaves the previous
checkpoint intact. Errors are raised with the file named, never swallowed.

Checkpoints are the server's private state (under DP: the exact, pre-release state of
every round), never part of what a run releases: ``checkpoints/`` is created 0700 and its
files 0600, whatever the umask.
"""

from __future__ import annotations

import json
import math
import os
import re
import zipfile
from pathlib import Path

import numpy as np

KEEP = 2


class CheckpointError(RuntimeError):
    pass


def save(run_dir: Path, server_round: int, weights: list[np.ndarray],
         optimizer_state: dict[str, np.ndarray], extra: dict | None = None) -> Path:
    ckpt_dir = Path(run_dir) / "checkpoints"
    ckpt_dir.mkdir(mode=0o700, exist_ok=True)
    os.chmod(ckpt_dir, 0o700)  # also a directory made by an older version
    path = ckpt_dir / f"round-{server_round:05d}.npz"
    tmp = ckpt_dir / f".round-{server_round:05d}.npz.tmp"
    arrays = {f"w_{i}": w for i, w in enumerate(weights)}
    arrays.update({f"opt_{k}": v for k, v in optimizer_state.items()})
    arrays["meta"] = np.frombuffer(json.dumps({"round": server_round, "num_weights": len(weights),
                                               "extra": extra or {}}).encode(), dtype=np.uint8)
    with _private_file(tmp) as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    latest_tmp = ckpt_dir / ".latest.json.tmp"
    with _private_file(latest_tmp) as fh:
        fh.write(json.dumps({"round": server_round, "file": path.name}).encode())
    os.replace(latest_tmp, ckpt_dir / "latest.json")
    for old in sorted(ckpt_dir.glob("round-*.npz"))[:-KEEP]:
        old.unlink()
    return path


def _private_file(path: Path):
    """Open ``path`` for writing, created owner-only (0600) from the first byte."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a leftover temporary file keeps its old mode otherwise
    return os.fdopen(fd, "wb")


def load(path: Path) -> dict:
    """Load one checkpoint file: {"round", "weights", "optimizer_state", "extra"}.

    Every array is read in full, so a truncated or bit-flipped file (zip CRC) is caught
    here, not halfway through a resumed run.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            if "meta" not in data.files:
                raise KeyError("no 'meta' entry")
            meta = json.loads(bytes(data["meta"]).decode())
            weights = [data[f"w_{i}"] for i in range(meta["num_weights"])]
            opt = {k[4:]: data[k] for k in data.files if k.startswith("opt_")}
        rnd, extra = meta["round"], meta.get("extra", {})
        if not isinstance(rnd, int) or rnd < 1 or not isinstance(extra, dict):
            raise ValueError(f"bad metadata {meta!r:.200}")
        name = re.fullmatch(r"round-(\d+)\.npz", path.name)
        if name and int(name.group(1)) != rnd:
            raise ValueError(f"it says round {rnd}")
        _check_extra(extra, rnd)
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile,
            UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise CheckpointError(f"{path}: not a readable fl_sim checkpoint ({exc})") from None
    return {"round": rnd, "weights": weights, "optimizer_state": opt, "extra": extra}


def _check_extra(extra: dict, rnd: int) -> None:
    """The JSON parts a resumed run relies on: the privacy ledger and the DP clip."""
    strategy = extra.get("strategy", {})
    if not isinstance(strategy, dict):
        raise ValueError("strategy state is not a table")
    if "privacy_ledger" in strategy:
        from fl_sim.privacy.accountant import PrivacyLedger

        ledger = strategy["privacy_ledger"]
        # The noise itself needs no stored state (drawn from (seed, round)), but the ledger
        # is the run's privacy spend: restoring a damaged one would misreport epsilon.
        PrivacyLedger.from_dict(ledger)
        segments = ledger["segments"]
        if sum(int(c) for _, c in segments) > rnd or not all(
                math.isfinite(float(z)) and float(z) >= 0 for z, _ in segments):
            raise ValueError(f"privacy ledger {segments!r:.200} does not fit round {rnd}")
    if "dp_ftrl" in strategy:
        from fl_sim.privacy.tree_accountant import TreeLedger

        ftrl = strategy["dp_ftrl"]
        # The tree's key and index decide which noise later rounds add: a damaged one
        # would draw fresh noise for nodes already released.
        charged = TreeLedger.from_dict(ftrl["ledger"]).rounds
        if charged > rnd or not isinstance(ftrl.get("tree"), int) or (
                ftrl.get("secret") is not None and not str(ftrl["secret"]).isdigit()):
            raise ValueError(f"DP-FTRL state {ftrl!r:.200} does not fit round {rnd}")
    clip = strategy.get("dp_aggregator", {}).get("clip_norm")
    if clip is not None and not (math.isfinite(float(clip)) and float(clip) > 0):
        raise ValueError(f"DP clip norm {clip!r}")


def candidates(run_dir: Path) -> tuple[list[Path], list[str]]:
    """The run's checkpoint files, the one ``latest.json`` names first, then newest first;
    and notes on a damaged or dangling ``latest.json``."""
    ckpt_dir = Path(run_dir) / "checkpoints"
    files = sorted(ckpt_dir.glob("round-*.npz"), reverse=True)  # zero-padded: newest first
    latest = ckpt_dir / "latest.json"
    notes: list[str] = []
    if latest.exists():
        try:
            name = json.loads(latest.read_text())["file"]
            if not isinstance(name, str) or Path(name).name != name:
                raise ValueError(f"file = {name!r}")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            notes.append(f"{latest}: unreadable ({exc})")
        else:
            named = ckpt_dir / name
            if named in files:
                files.remove(named)
                files.insert(0, named)
            else:
                notes.append(f"{latest} points to {named}, which does not exist")
    return files, notes


def resume_point(run_dir: Path, logged_rounds: set[int] | None = None,
                 model: str | None = None) -> tuple[dict | None, list[str]]:
    """The newest intact checkpoint to resume from, and what was wrong with newer ones.

    A checkpoint is usable when it loads (:func:`load`), was written for ``model`` and
    ``logged_rounds`` (the rounds metrics.jsonl has) includes every round up to it: a
    resume must not leave a gap in the metrics. Returns ``(None, [])`` for a run that
    never checkpointed; raises :class:`CheckpointError` naming the files when a run did
    and none is usable.
    """
    run_dir = Path(run_dir)
    files, notes = candidates(run_dir)
    latest = run_dir / "checkpoints" / "latest.json"
    if not files:
        if not latest.exists():
            return None, []
        raise CheckpointError("; ".join(notes) or f"{latest}: no checkpoint file beside it")
    problems = list(notes)
    for path in files:
        try:
            ckpt = load(path)
        except CheckpointError as exc:
            problems.append(str(exc))
            continue
        if model is not None and ckpt["extra"].get("model", model) != model:
            problems.append(f"{path}: a checkpoint of model {ckpt['extra']['model']!r}, "
                            f"this run trains {model!r}")
            continue
        missing = sorted(set(range(1, ckpt["round"] + 1)) - (logged_rounds or set()))
        if logged_rounds is not None and missing:
            problems.append(f"{path}: round {ckpt['round']}, but {run_dir / 'metrics.jsonl'} "
                            f"has no row for round{'s' if len(missing) > 1 else ''} "
                            f"{', '.join(map(str, missing[:5]))}{' ...' if len(missing) > 5 else ''}")
            continue
        if problems:
            problems.append(f"resuming from {path.name} (round {ckpt['round']}), the newest "
                            "intact checkpoint; later rounds are trained again")
        return ckpt, problems
    raise CheckpointError("; ".join(problems) + f"; no intact checkpoint is left (fl_sim keeps "
                          f"the last {KEEP})")


def load_latest(run_dir: Path) -> dict | None:
    """The newest intact checkpoint of a run, or None if it has none yet."""
    return resume_point(run_dir)[0]
