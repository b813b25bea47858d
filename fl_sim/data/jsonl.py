"""JSON Lines source: one ``{"client_id": str|int, "text": str}`` object per line.

Rows of the same client are concatenated in file order; integer ids become strings
(so ``1`` and ``"1"`` are the same client). Extra keys are ignored and blank lines are
skipped. Text is cut into sentence units at newlines and after ``.``, ``!``, ``?``
(:func:`fl_sim.data.tokenizer.text_units`).
"""

from __future__ import annotations

import json

from fl_sim.data.base import DataError, InMemorySource, file_fingerprint, require_file
from fl_sim.data.tokenizer import text_units


class JsonlSource(InMemorySource):
    """Clients from a JSON Lines file (see module docstring)."""

    name = "jsonl"

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = require_file(path, 'a JSON Lines file of {"client_id": ..., "text": ...} rows')

    def fingerprint(self) -> dict:
        return file_fingerprint(self.path)

    def _parse(self) -> dict[str, list[list[str]]]:
        clients: dict[str, list[list[str]]] = {}
        rows = 0
        with open(self.path, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
                where = f"{self.path}: line {lineno}"
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise DataError(f"{where}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno}); "
                                    'expected an object like {"client_id": "a", "text": "..."}') from None
                if not isinstance(row, dict):
                    raise DataError(f"{where}: expected a JSON object with keys client_id and text, "
                                    f"got {type(row).__name__}")
                for key in ("client_id", "text"):
                    if key not in row:
                        raise DataError(f"{where}: missing key {key!r}; expected keys client_id and text")
                cid, text = row["client_id"], row["text"]
                if isinstance(cid, bool) or not isinstance(cid, (str, int)):
                    raise DataError(f"{where}: client_id = {cid!r}: expected a string or an integer")
                if isinstance(cid, str) and not cid.strip():
                    raise DataError(f"{where}: client_id is empty: expected a non-empty string")
                if not isinstance(text, str):
                    raise DataError(f"{where}: text = {text!r}: expected a string")
                clients.setdefault(str(cid), []).extend(text_units(text))
                rows += 1
        if rows == 0:
            raise DataError(f"{self.path}: line 1: no rows; expected JSON objects with client_id and text")
        return clients
