"""Folder source: one UTF-8 ``.txt`` file per client, client id = file stem.

Only regular ``*.txt`` files directly in the folder count (case-insensitive suffix);
hidden files (``.name``), sub-folders and other files are ignored, so a README or an
editor's swap file never becomes a client. Text is cut into sentence units like the
JSONL source: newlines, then after ``.``, ``!``, ``?``.
"""

from __future__ import annotations

import os
from pathlib import Path

from fl_sim.data.base import DataError, InMemorySource, files_fingerprint
from fl_sim.data.tokenizer import text_units


class FolderSource(InMemorySource):
    """Clients from the text files of one folder (see module docstring)."""

    name = "folder"

    def __init__(self, path: str) -> None:
        super().__init__()
        self.root = Path(os.path.expanduser(path))
        if not self.root.is_dir():
            raise DataError(f"{path}: no such folder (expected a folder of <client_id>.txt files)")

    def files(self) -> list[Path]:
        entries = sorted(p for p in self.root.iterdir() if not p.name.startswith("."))
        files = [p for p in entries if p.is_file() and p.suffix.lower() == ".txt"]
        if not files:
            found = ", ".join(p.name for p in entries[:5]) or "nothing"
            raise DataError(f"{self.root}: no text files (expected <client_id>.txt files; found {found})")
        seen: dict[str, Path] = {}
        for p in files:
            if p.stem in seen:
                raise DataError(f"{p}: client id {p.stem!r} also used by {seen[p.stem].name}; "
                                "expected one file per client")
            seen[p.stem] = p
        return files

    def fingerprint(self) -> dict:
        return files_fingerprint(self.files(), self.root)

    def _parse(self) -> dict[str, list[list[str]]]:
        clients: dict[str, list[list[str]]] = {}
        for p in self.files():
            data = p.read_bytes()
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                line = data[:exc.start].count(b"\n") + 1
                raise DataError(f"{p}: line {line}: not UTF-8 ({exc.reason} at byte {exc.start}); "
                                "expected UTF-8 text") from None
            clients[p.stem] = text_units(text)
        return clients
