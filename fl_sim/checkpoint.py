"""Atomic checkpoints: global weights, server optimizer state, round and extra state.

Each checkpoint is one .npz written to a temporary name and renamed into place, then
``latest.json`` is replaced the same way, so a crash at any moment leaves the previous
checkpoint intact. Errors are raised with the file named, never swallowed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

KEEP = 2


class CheckpointError(RuntimeError):
    pass


def save(run_dir: Path, server_round: int, weights: list[np.ndarray],
         optimizer_state: dict[str, np.ndarray], extra: dict | None = None) -> Path:
    ckpt_dir = Path(run_dir) / "checkpoints"
    ckpt_dir.mkdir(exist_ok=True)
    path = ckpt_dir / f"round-{server_round:05d}.npz"
    tmp = ckpt_dir / f".round-{server_round:05d}.npz.tmp"
    arrays = {f"w_{i}": w for i, w in enumerate(weights)}
    arrays.update({f"opt_{k}": v for k, v in optimizer_state.items()})
    arrays["meta"] = np.frombuffer(json.dumps({"round": server_round, "num_weights": len(weights),
                                               "extra": extra or {}}).encode(), dtype=np.uint8)
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    latest_tmp = ckpt_dir / ".latest.json.tmp"
    latest_tmp.write_text(json.dumps({"round": server_round, "file": path.name}))
    os.replace(latest_tmp, ckpt_dir / "latest.json")
    for old in sorted(ckpt_dir.glob("round-*.npz"))[:-KEEP]:
        old.unlink()
    return path


def load(path: Path) -> dict:
    """Load one checkpoint file: {"round", "weights", "optimizer_state", "extra"}."""
    try:
        with np.load(path) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            weights = [data[f"w_{i}"] for i in range(meta["num_weights"])]
            opt = {k[4:]: data[k] for k in data.files if k.startswith("opt_")}
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not a readable fl_sim checkpoint ({exc})") from None
    return {"round": meta["round"], "weights": weights, "optimizer_state": opt,
            "extra": meta.get("extra", {})}


def load_latest(run_dir: Path) -> dict | None:
    """The newest checkpoint of a run, or None if it has none yet."""
    ckpt_dir = Path(run_dir) / "checkpoints"
    latest = ckpt_dir / "latest.json"
    if not latest.exists():
        return None
    try:
        name = json.loads(latest.read_text())["file"]
    except (json.JSONDecodeError, KeyError) as exc:
        raise CheckpointError(f"{latest}: unreadable ({exc})") from None
    path = ckpt_dir / name
    if not path.exists():
        raise CheckpointError(f"{latest} points to {path}, which does not exist")
    return load(path)
