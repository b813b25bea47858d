"""Seeded fault injection for simulated clients (failure tests and robustness studies).

A client "crashes" in round t with probability ``simulation.client_failure_rate``, drawn
from ``rng(seed, "client-failure", t, client_id)``: the draw depends only on who and when,
not on which worker or node trains the client, so one and two workers lose the same
clients and a resumed run loses the same clients as an uninterrupted one. A crashed client
dies before replying, so the
server sees it exactly as a dropped device: sampled, never completed.
"""

from __future__ import annotations

from fl_sim.seeding import rng


def crashes(seed: int, server_round: int, client_id: str, rate: float) -> bool:
    if rate <= 0.0:
        return False
    return bool(rng(seed, "client-failure", server_round, client_id).random() < rate)
