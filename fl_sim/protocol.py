"""What the ServerApp and ClientApps say to each other (keys of Flower Message records).

A train message carries the global model and the ids of the clients that node trains this
round; the reply carries one update and one metric record per client, so the server can
validate, clip or reject each client's update on its own. In simulation any node can train
any client (nodes are workers over one shared corpus, as in pfl-research); a deployment
assigns each node the clients it owns.
"""

from __future__ import annotations

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

ARRAYS = "arrays"
CONFIG = "config"
CLIENTS = "clients"  # reply: ConfigRecord {"ids": [...]}
FAILURES = "failures"  # reply: ConfigRecord {"ids": [...], "reasons": [...]}: clients that raised


def update_key(i: int) -> str:
    return f"update.{i}"


def metrics_key(i: int) -> str:
    return f"metrics.{i}"


def train_message(node_id: int, arrays: ArrayRecord, server_round: int, client_ids: list[str],
                  experiment_toml: str) -> Message:
    config = ConfigRecord({"server-round": server_round, "client-ids": list(client_ids),
                           "experiment": experiment_toml})
    return Message(RecordDict({ARRAYS: arrays, CONFIG: config}), message_type="train",
                   dst_node_id=node_id)


def train_reply(request: Message, results: list[tuple[str, list[np.ndarray], dict]],
                failures: list[tuple[str, str]] = ()) -> Message:
    """The node's reply: one update per client that trained, and ``(client id, reason)``
    for each client whose training raised (the others' updates still arrive)."""
    content: dict = {CLIENTS: ConfigRecord({"ids": [cid for cid, _, _ in results]})}
    if failures:
        content[FAILURES] = ConfigRecord({"ids": [str(c) for c, _ in failures],
                                          "reasons": [str(r) for _, r in failures]})
    for i, (_, delta, metrics) in enumerate(results):
        content[update_key(i)] = ArrayRecord([np.asarray(d) for d in delta])
        content[metrics_key(i)] = MetricRecord(
            {k: (float(v) if isinstance(v, float) else int(v)) for k, v in metrics.items()})
    return Message(RecordDict(content), reply_to=request)


def read_train_reply(reply: Message) -> list[tuple[str, list[np.ndarray], dict]]:
    """Decode a reply into (client id, update, metrics) triples; raise ValueError if malformed."""
    content = reply.content
    try:
        ids = list(content[CLIENTS]["ids"])
    except KeyError:
        raise ValueError("reply has no client ids") from None
    out = []
    for i, cid in enumerate(ids):
        try:
            delta = content[update_key(i)].to_numpy_ndarrays()
            metrics = dict(content[metrics_key(i)])
        except KeyError:
            raise ValueError(f"reply lacks the update or metrics of client {cid!r}") from None
        out.append((str(cid), delta, metrics))
    return out


def read_train_failures(reply: Message) -> list[tuple[str, str]]:
    """``(client id, reason)`` of the clients whose training raised on that node."""
    if FAILURES not in reply.content:
        return []
    rec = reply.content[FAILURES]
    return list(zip(map(str, rec["ids"]), map(str, rec["reasons"])))
