"""docs/performance.json: the ratios `make bench` measured, small and committed (issue 18).

benchmarks/results/*.json hold every case's raw numbers and stay git-ignored; this file
keeps, per benchmark, its date, commit, load average and the ratios and targets it reports,
so a change in a ratio shows up in review. Every number here is a ratio of two cases
measured in the same run (or a share within one run), never an absolute time.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.common import REPO, RESULTS

OUT = REPO / "docs" / "performance.json"
# Keys that hold a ratio, a speed-up, a share or a bound (the report's "measured" column).
RATIO_MARKS = ("_over_", "speedup", "_share", "_bound", "ratio")
# What identifies a row of a benchmark's "results" list.
ROW_KEYS = ("cohort", "model", "population", "format", "variant")


def _ratios(d: dict) -> dict:
    return {k: v for k, v in d.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
            and any(m in k for m in RATIO_MARKS)}


def summarise(result: dict) -> dict:
    """One benchmark's entry: when and where, its targets, and its ratios (per row)."""
    m = result.get("machine", {})
    entry = {"date": result.get("date"), "commit": m.get("commit"), "cpu": m.get("cpu_model"),
             "cpus": m.get("cpus"), "loadavg_at_end": (m.get("loadavg") or [None])[0],
             "quick": result.get("quick", False)}
    for k in ("target", "met"):
        if k in result:
            entry[k] = result[k]
    entry.update(_ratios(result))
    rows = []
    for row in result.get("results", []) if isinstance(result.get("results"), list) else []:
        if not isinstance(row, dict):
            continue
        ratios = _ratios(row)
        if ratios:
            rows.append({**{k: row[k] for k in ROW_KEYS if k in row}, **ratios})
    if rows:
        entry["rows"] = rows
    return entry


def write(results_dir: Path = RESULTS, out: Path = OUT) -> Path:
    """Merge what this run measured into ``out``: benchmarks not run now keep their entry."""
    merged = json.loads(out.read_text()) if out.is_file() else {}
    benches = merged.get("benchmarks", {})
    for path in sorted(Path(results_dir).glob("*.json")):
        result = json.loads(path.read_text())
        name = result.get("benchmark", path.stem)
        if name == "run_all" or result.get("quick"):
            continue  # BENCH_QUICK numbers mean nothing and must not replace real ones
        benches[name] = summarise(result)
    doc = {"about": "Ratios measured by `make bench` (benchmarks/summary_json.py); raw numbers "
                    "in benchmarks/results/*.json (git-ignored). Each ratio compares cases of one run.",
           "benchmarks": dict(sorted(benches.items()))}
    out.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    return out


if __name__ == "__main__":
    print(f"wrote {write()}")
