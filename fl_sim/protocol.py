"""What the ServerApp and ClientApps say to each other (keys of Flower Message records).

A train message carries the global model and the ids of the clients that node trains this
round; the reply carries one update and one metric record per client, so the server can
validate, clip or reject each client's update on its own. With ``deployment.node_sums`` the
reply carries instead the node's sum of its valid updates (fl_sim/updates.py ``NodeSum``)
with every client's metrics and verdict. In simulation any node can train
any client (nodes are workers over one shared corpus, as in pfl-research); a deployment
assigns each node the clients it owns.
"""

from __future__ import annotations

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

from fl_sim.updates import NodeSum

ARRAYS = "arrays"
CONFIG = "config"
CLIENTS = "clients"  # reply: ConfigRecord {"ids": [...]}
FAILURES = "failures"  # reply: ConfigRecord {"ids": [...], "reasons": [...]}: clients that raised
# A node-sum reply (deployment.node_sums), in place of CLIENTS and update.<i>:
SUM_CLIENTS = "node-sum.clients"  # ConfigRecord {"ids": [...], "problems": [...; "" = accepted]}
#                                    and under DP "clip-norm" (C) and "norms" (accepted clients')
SUM_TOTAL = "node-sum.total"  # ArrayRecord: float64 weighted (under DP: clipped) sum of the accepted updates
# Train message config under DP with node sums: the round's clip norm the node clips to.
CLIP_NORM = "clip-norm"


def update_key(i: int) -> str:
    return f"update.{i}"


def metrics_key(i: int) -> str:
    return f"metrics.{i}"


def train_message(node_id: int, arrays: ArrayRecord, server_round: int, client_ids: list[str],
                  experiment_toml: str, clip_norm: float | None = None) -> Message:
    """``clip_norm``: under DP with ``deployment.node_sums``, the ``C`` the node clips to."""
    config = ConfigRecord({"server-round": server_round, "client-ids": list(client_ids),
                           "experiment": experiment_toml})
    if clip_norm is not None:
        config[CLIP_NORM] = float(clip_norm)
    return Message(RecordDict({ARRAYS: arrays, CONFIG: config}), message_type="train",
                   dst_node_id=node_id)


def train_reply(request: Message, results: list[tuple[str, list[np.ndarray], dict]],
                failures: list[tuple[str, str]] = ()) -> Message:
    """The node's reply: one update per client that trained, and ``(client id, reason)``
    for each client whose training raised (the others' updates still arrive)."""
    content: dict = {CLIENTS: ConfigRecord({"ids": [cid for cid, _, _ in results]})}
    _with_failures(content, failures)
    for i, (_, delta, metrics) in enumerate(results):
        content[update_key(i)] = ArrayRecord([np.asarray(d) for d in delta])
        content[metrics_key(i)] = _metric_record(metrics)
    return Message(RecordDict(content), reply_to=request)


def _metric_record(metrics: dict) -> MetricRecord:
    return MetricRecord({k: (float(v) if isinstance(v, float) else int(v)) for k, v in metrics.items()})


def _with_failures(content: dict, failures) -> dict:
    if failures:
        content[FAILURES] = ConfigRecord({"ids": [str(c) for c, _ in failures],
                                          "reasons": [str(r) for _, r in failures]})
    return content


def node_sum_reply(request: Message, node_sum: NodeSum, failures: list[tuple[str, str]] = ()) -> Message:
    """The node's reply with ``deployment.node_sums``: one summed update for all its clients."""
    record = ConfigRecord({"ids": [cid for cid, _, _ in node_sum.clients],
                           "problems": [problem or "" for _, _, problem in node_sum.clients]})
    if node_sum.clip_norm is not None:
        record[CLIP_NORM] = float(node_sum.clip_norm)
        record["norms"] = [float(n) for n in node_sum.norms or []]
    content: dict = {SUM_CLIENTS: record}
    _with_failures(content, failures)
    if node_sum.total is not None:
        content[SUM_TOTAL] = ArrayRecord([np.asarray(t) for t in node_sum.total])
    for i, (_, metrics, _) in enumerate(node_sum.clients):
        content[metrics_key(i)] = _metric_record(metrics)
    return Message(RecordDict(content), reply_to=request)


def read_node_sum(reply: Message) -> NodeSum | None:
    """The reply's NodeSum, None if it is a per-client reply; ValueError if malformed."""
    content = reply.content
    if SUM_CLIENTS not in content:
        return None
    try:
        rec = content[SUM_CLIENTS]
        ids, problems = list(rec["ids"]), list(rec["problems"])
    except KeyError:
        raise ValueError("node-sum reply has no client ids or verdicts") from None
    if len(ids) != len(problems):
        raise ValueError(f"node-sum reply has {len(ids)} client ids but {len(problems)} verdicts")
    clients = []
    for i, (cid, problem) in enumerate(zip(ids, problems)):
        try:
            metrics = dict(content[metrics_key(i)])
        except KeyError:
            raise ValueError(f"node-sum reply lacks the metrics of client {cid!r}") from None
        clients.append((str(cid), metrics, str(problem) or None))
    total = content[SUM_TOTAL].to_numpy_ndarrays() if SUM_TOTAL in content else None
    if (total is None) != all(p is not None for _, _, p in clients):
        raise ValueError("node-sum reply: a summed update must come with, and only with, "
                         "accepted clients")
    clip = norms = None
    if CLIP_NORM in rec:
        clip = float(rec[CLIP_NORM])
        norms = [float(n) for n in rec["norms"]] if "norms" in rec else []
        accepted = sum(p is None for _, _, p in clients)
        if len(norms) != accepted or not all(np.isfinite(n) and n >= 0 for n in norms):
            raise ValueError(f"node-sum reply: {len(norms)} update norms for {accepted} accepted "
                             "clients, expected one finite norm >= 0 each")
    return NodeSum(clients, total, clip, norms)


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
