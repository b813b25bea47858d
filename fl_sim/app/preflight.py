"""What `fl-sim run` and `fl-sim cluster run` check before they start Flower: data and
settings that load but cannot run fail here with exit code 2, not inside a ServerApp."""

from __future__ import annotations

import sys
from pathlib import Path


class DataProblem(Exception):
    """Data or settings that load but cannot run (exit 2 before Flower starts)."""


def check_data_early(cfg):
    """Load the corpus once before starting Flower so bad data fails fast with exit code 2.

    Returns ``cfg`` with the warnings the data leads to (printed here, kept in the manifest).
    """
    from fl_sim.config import check_population
    from fl_sim.data import DataError, load_corpus

    try:
        corpus = load_corpus(cfg.data, cfg.experiment.run_seeds[0])
    except DataError as exc:
        raise DataProblem(str(exc)) from None
    except OSError as exc:  # an unwritable cache (a cache hit only reads) or unreadable input
        cache = Path(cfg.data.cache_dir).expanduser().resolve()
        if exc.filename and Path(exc.filename).resolve().is_relative_to(cache):
            raise DataProblem(f"data.cache_dir = {cfg.data.cache_dir!r}: cannot write the "
                              f"tokenized corpus there ({exc.strerror}: {exc.filename})") from None
        raise DataProblem(f"{exc.filename or cfg.data.path}: {exc.strerror or exc}") from None
    cfg = check_population(cfg, len(corpus.train_client_ids))
    for note in cfg.warnings:
        print(f"fl-sim: warning: {note}", file=sys.stderr, flush=True)
    if cfg.privacy.enabled:
        # DP settings that cannot work (cohort > population, adaptive clipping with too
        # little count noise, an accountant that cannot handle the sampling) fail here.
        from strategies.registry import make_strategy

        try:
            make_strategy(cfg.server.strategy, cfg, corpus.train_client_ids, "")
        except ValueError as exc:
            raise DataProblem(f"{cfg.source}: [privacy]: {exc}") from None
    if cfg.pruning.enabled:
        from strategies.pruning_strategy import check_schedule

        try:
            check_schedule(cfg)
        except ValueError as exc:
            raise DataProblem(f"{cfg.source}: [pruning]: {exc}") from None
    from fl_sim.tracking import TrackingError, check_available

    try:
        check_available(cfg)
    except TrackingError as exc:
        raise DataProblem(f"{cfg.source}: [tracking]: {exc}") from None
    return cfg
