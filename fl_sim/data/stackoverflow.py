"""TFF's Stack Overflow SQLite file (``stackoverflow.sqlite``) as a federated corpus.

Schema, as ``tff.simulation.datasets.stackoverflow.load_data`` downloads it and
``tff.simulation.datasets.SqlClientData`` reads it (tensorflow_federated,
``python/simulation/datasets/sql_client_data.py``)::

    CREATE TABLE examples (split_name TEXT NOT NULL, client_id TEXT NOT NULL,
                           serialized_example_proto BLOB NOT NULL);
    CREATE TABLE client_metadata (client_id TEXT NOT NULL, split_name TEXT NOT NULL,
                                  num_examples INTEGER NOT NULL);

``split_name`` is ``train``, ``heldout`` or ``test``. Each example is a serialized
``tf.train.Example`` with bytes features ``tokens`` (the sentence, already lower-cased,
punctuation split off, tokens joined by single spaces), ``title``, ``tags``,
``creation_date``, ``type`` and int64 ``score``. One example is one sentence unit; its
tokens are the whitespace-split ``tokens`` feature, as in TFF's ``build_to_ids_fn``
(no further normalisation, so ``<URL>`` stays as is).

Split choice: only the ``train`` split is read. Our own held-out clients and per-client
test split are then applied exactly as for every other source, so all sources share one
convention. TFF's ``heldout`` users (``user_id % 10 == 0``) and ``test`` (posts after
2018-01-01) are not used.

Client sizes for choosing eval and train clients come from ``client_metadata`` (no
example is parsed for clients that are not selected, which matters with 342k users);
an example with empty ``tokens`` is skipped, so a client may end up with slightly
fewer sequences than its metadata says.
"""

from __future__ import annotations

import sqlite3

from fl_sim.data.base import DataError, file_fingerprint, require_file

SPLIT = "train"
_REQUIRED = {
    "examples": {"split_name", "client_id", "serialized_example_proto"},
    "client_metadata": {"client_id", "split_name", "num_examples"},
}


class StackOverflowSource:
    """Clients of the ``train`` split of TFF's Stack Overflow SQLite file."""

    name = "stackoverflow_sqlite"

    def __init__(self, path: str) -> None:
        self.path = require_file(path, "TFF's stackoverflow.sqlite")
        self._conn: sqlite3.Connection | None = None

    def fingerprint(self) -> dict:
        return {"split": SPLIT, **file_fingerprint(self.path)}

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            # as_uri() percent-encodes the path: a raw '#' or '?' in it would end the URI's
            # path, and SQLite would open (and create) a different file read-write.
            conn = sqlite3.connect(self.path.resolve().as_uri() + "?mode=ro", uri=True)
            try:
                for table, cols in _REQUIRED.items():
                    have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
                    if not have:
                        raise DataError(f"{self.path}: no table {table!r}; expected TFF's SQLite "
                                        "schema with tables 'examples' and 'client_metadata'")
                    if cols - have:
                        raise DataError(f"{self.path}: table {table!r} lacks columns "
                                        f"{sorted(cols - have)}; expected {sorted(cols)}")
            except sqlite3.DatabaseError as exc:
                conn.close()
                raise DataError(f"{self.path}: not a readable SQLite database ({exc}); "
                                "expected TFF's stackoverflow.sqlite") from None
            except DataError:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def client_sizes(self) -> dict[str, int]:
        rows = self._connect().execute(
            "SELECT client_id, SUM(num_examples) FROM client_metadata "
            "WHERE split_name = ? GROUP BY client_id", (SPLIT,)).fetchall()
        if not rows:
            splits = [r[0] for r in self._connect().execute(
                "SELECT DISTINCT split_name FROM client_metadata LIMIT 10")]
            raise DataError(f"{self.path}: no clients with split_name {SPLIT!r} in client_metadata "
                            f"(found splits {splits}); expected TFF's stackoverflow.sqlite")
        return {str(cid): int(n) for cid, n in rows}

    def client_units(self, client_id: str) -> list[list[str]]:
        import tensorflow as tf  # deferred: a 5 s import that cache hits never pay

        parse = tf.train.Example.FromString
        units: list[list[str]] = []
        cursor = self._connect().execute(
            "SELECT rowid, serialized_example_proto FROM examples "
            "WHERE split_name = ? AND client_id = ? ORDER BY rowid", (SPLIT, client_id))
        for rowid, blob in cursor:
            where = f"{self.path}: table examples, rowid {rowid} (client {client_id!r})"
            try:
                example = parse(bytes(blob))
            except Exception as exc:  # protobuf raises its own DecodeError type
                raise DataError(f"{where}: not a serialized tf.train.Example ({exc})") from None
            feature = example.features.feature.get("tokens")
            if feature is None or feature.WhichOneof("kind") != "bytes_list" or not feature.bytes_list.value:
                raise DataError(f"{where}: expected a bytes feature 'tokens'")
            try:
                text = feature.bytes_list.value[0].decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{where}: 'tokens' is not UTF-8 ({exc.reason})") from None
            tokens = text.split()
            if tokens:
                units.append(tokens)
        return units
