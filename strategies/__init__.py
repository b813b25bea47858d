"""Server strategies, one per file, looked up by config name."""

from strategies.registry import make_strategy, STRATEGIES  # noqa: F401
