"""Which node trains which client: partitions of the client list, per-round node plans and
each client's SGD step count.

Shared by the server side (strategies, which plan a round) and the client side (a
SuperNode that owns one partition), so it lives in fl_sim's core, below both.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from fl_sim.config import ClientConfig
from fl_sim.data.population import ClientIds


def local_steps(client: ClientConfig, num_sequences: int) -> int:
    """SGD steps of a client with ``num_sequences`` training sequences (= len(batches_for))."""
    steps = client.local_epochs * max(1, -(-num_sequences // client.batch_size))
    return min(steps, client.max_steps) if client.max_steps else steps



class ClientPartitions:
    """Client id -> partition id: contiguous, near-equal slices of ``client_ids`` in order
    (client at position i belongs to partition ``i * num_partitions // len(client_ids)``).

    ``client_ids`` is the corpus's training-client list (fixed by data config and seed), so
    the server and every node compute the same slices. A lazy population (ClientIds)
    stays lazy: its ``index`` is O(1).
    """

    def __init__(self, client_ids, num_partitions: int):
        self.n, self.num_partitions = len(client_ids), num_partitions
        if isinstance(client_ids, ClientIds):
            self._position = client_ids.index
        else:
            self._position = {cid: i for i, cid in enumerate(client_ids)}.__getitem__

    def __getitem__(self, cid: str) -> int:
        try:
            return self._position(cid) * self.num_partitions // self.n
        except ValueError:
            raise KeyError(cid) from None

    def get(self, cid: str, default=None):
        try:
            return self[cid]
        except KeyError:
            return default


def partition_clients(client_ids, num_partitions: int) -> ClientPartitions:
    """Which partition owns each client (see ClientPartitions)."""
    return ClientPartitions(client_ids, num_partitions)


def split_over_nodes(cohort: list[str], node_ids: list[int],
                     node_partitions: dict[int, int] | None = None,
                     client_partitions: ClientPartitions | None = None,
                     cost: Callable[[str], float] | None = None) -> dict[int, list[str]]:
    """Node id -> the cohort clients it trains this round.

    Without partitions (simulation) any node trains any client. With ``cost`` (a
    client's SGD steps) the clients are balanced over the sorted node ids by the
    longest-first greedy rule (each client, costliest first, goes to the node with the
    least work so far), so workers finish a round together even when clients' data sizes
    differ by orders of magnitude; without it, round-robin. With ``node_partitions`` (node
    id -> partition id, a deployment where each SuperNode owns a slice of the clients) each
    client goes only to a node of its own partition (round-robin if several nodes share
    one); clients whose partition has no live node are left out and count as failed.
    A node's clients keep the cohort's order.
    """
    nodes = sorted(node_ids)
    plan: dict[int, list[str]] = {}
    if node_partitions is None and cost is not None:
        costs = {cid: cost(cid) for cid in cohort}
        load = [(0.0, k) for k in range(len(nodes))]  # (work so far, node index): a heap
        chosen: dict[str, int] = {}
        for cid in sorted(cohort, key=lambda c: -costs[c]):  # stable: ties keep cohort order
            work, k = heapq.heappop(load)
            chosen[cid] = k
            heapq.heappush(load, (work + costs[cid], k))
        for cid in cohort:
            plan.setdefault(nodes[chosen[cid]], []).append(cid)
        return plan
    if node_partitions is None:
        for i, cid in enumerate(cohort):
            plan.setdefault(nodes[i % len(nodes)], []).append(cid)
        return plan
    owners: dict[int, list[int]] = {}
    for node in nodes:
        if node in node_partitions:
            owners.setdefault(node_partitions[node], []).append(node)
    used: dict[int, int] = {}
    for cid in cohort:
        part = client_partitions[cid]
        if part not in owners:
            continue
        k = used.get(part, 0)
        used[part] = k + 1
        plan.setdefault(owners[part][k % len(owners[part])], []).append(cid)
    return plan
