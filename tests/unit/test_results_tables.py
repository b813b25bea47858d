"""scripts/results_tables.py: a seed that diverged (perplexity past 1e5, or NaN) is named as
such in a cell, never averaged into a mean or a paired difference."""

import importlib.util
import math

from tests.integration.conftest import REPO

spec = importlib.util.spec_from_file_location("results_tables", REPO / "scripts" / "results_tables.py")
rt = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rt)


def test_nan_and_huge_perplexities_are_diverged_runs():
    assert rt.cell([219.4, 1e304, math.nan], ".1f") == "diverged in 2 of 3"
    assert rt.cell([219.4, math.nan, 230.0], ".1f") == "diverged in 1 of 3"
    # Finite runs get the mean and the 95% t half-width (scipy: t(0.975, 2) = 4.303)
    sd = 5.0
    assert rt.cell([195.0, 200.0, 205.0], ".1f") == f"200.0 ± {4.302652729911275 * sd / math.sqrt(3):.1f}"
    assert not rt.diverged(None) and rt.diverged(math.nan) and rt.diverged(-2e5)
