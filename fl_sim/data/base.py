"""Shared pieces of the data layer: the error type, file fingerprints, the source protocol.

A *source* turns some input (Shakespeare plays, a JSONL file, a folder, TFF's Stack
Overflow SQLite file, a synthetic grammar) into clients, each a list of sentence units,
each unit a non-empty list of word tokens. Everything after that (splits, vocabulary,
sequences, cache) is source-independent and lives in :mod:`fl_sim.data.corpus`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol


class DataError(ValueError):
    """An input file is malformed or unusable. The CLI maps it to exit code 2.

    The message names the file, the line (1-based, or the SQLite rowid) and what was
    expected, so a user can fix the file without reading code.
    """


def file_fingerprint(path: Path) -> dict:
    """Identity of a file's content version that is cheap to compute (no read).

    Size plus nanosecond mtime changes whenever the file is rewritten; a content hash
    would cost a full read of a multi-gigabyte SQLite file on every cache lookup.
    """
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def files_fingerprint(paths: Iterable[Path], root: Path) -> dict:
    """Fingerprint of a set of files: one digest over (relative path, size, mtime)."""
    h = hashlib.sha256()
    n = 0
    for p in sorted(paths):
        st = p.stat()
        h.update(f"{p.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        n += 1
    return {"root": str(root.resolve()), "files": n, "digest": h.hexdigest()}


class Source(Protocol):
    """What :func:`fl_sim.data.load_corpus` needs from a data source.

    ``fingerprint`` must be cheap (it runs on every cache lookup); the two data methods
    run only when the cache misses.
    """

    name: str

    def fingerprint(self) -> dict:
        """JSON-able identity of the input data (paths, sizes, mtimes, versions)."""

    def client_sizes(self) -> dict[str, int]:
        """Number of sentence units per client, used to choose eval and train clients."""

    def client_units(self, client_id: str) -> list[list[str]]:
        """The client's non-empty sentence units, each a list of word tokens, in source order."""


class InMemorySource:
    """A source whose clients are parsed once into memory (all sources but Stack Overflow).

    Subclasses implement ``_parse() -> dict[str, list[list[str]]]`` (units must be
    non-empty) and ``fingerprint``; parsing happens lazily so that a cache hit never
    reads the input.
    """

    name = "in-memory"

    def __init__(self) -> None:
        self._units: dict[str, list[list[str]]] | None = None

    def _parse(self) -> dict[str, list[list[str]]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _all(self) -> dict[str, list[list[str]]]:
        if self._units is None:
            self._units = self._parse()
        return self._units

    def client_sizes(self) -> dict[str, int]:
        return {cid: len(units) for cid, units in self._all().items()}

    def client_units(self, client_id: str) -> list[list[str]]:
        return self._all()[client_id]


def require_file(path: str, what: str) -> Path:
    """Resolve ``path`` and raise :class:`DataError` unless it is an existing file."""
    p = Path(os.path.expanduser(path))
    if not p.is_file():
        raise DataError(f"{path}: no such file (expected {what})")
    return p
