"""The app layer: the only part of fl_sim that wires ``clients/`` and ``strategies/`` together.

ServerApp (``server_app``), the in-process simulation runner (``simulation``), the local
Flower cluster (``cluster``), sweeps (``sweep``) and the ``fl-sim`` CLI (``cli``). Nothing
below this package imports it, ``clients/`` or ``strategies/`` (tests/unit/test_layers.py).
"""
