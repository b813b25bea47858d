"""Utility-privacy sweeps: a grid of full runs over noise multipliers or target epsilons.

A sweep file names a base experiment and the grid::

    [sweep]
    name = "dp_frontier"
    experiment = "../demo.toml"          # relative to the sweep file
    models = ["si_cifg", "cifg"]          # default: the base experiment's compare list or model
    noise_multipliers = [0.1, 0.3, 1.0]   # or: target_epsilons = [2.0, 8.0]
    non_private_reference = true          # one run per model without DP
    set = ["experiment.rounds=30"]        # overrides applied to every point

Each point is an ordinary run directory under ``<sweep_dir>/points/<point>/``; a point
whose summary.json exists is done, one with a checkpoint is resumed, so an interrupted
sweep continues with ``fl-sim sweep --resume SWEEP_DIR``.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

from fl_sim.config import MODEL_KINDS, ConfigError, ExperimentConfig, load_experiment, read_toml
from fl_sim.results import atomic_write_text

SWEEP_KEYS = {"name", "experiment", "models", "noise_multipliers", "target_epsilons",
              "non_private_reference", "set"}


@dataclass(frozen=True)
class Point:
    name: str
    model: str
    noise_multiplier: float | None
    target_epsilon: float | None

    @property
    def private(self) -> bool:
        return self.noise_multiplier is not None or self.target_epsilon is not None

    def overrides(self) -> list[str]:
        out = ["experiment.compare=[]", f'model.kind="{self.model}"']
        if self.noise_multiplier is not None:
            out += ["privacy.enabled=true", f"privacy.noise_multiplier={self.noise_multiplier}",
                    "privacy.target_epsilon=0.0"]
        elif self.target_epsilon is not None:
            out += ["privacy.enabled=true", f"privacy.target_epsilon={self.target_epsilon}"]
        else:
            out += ["privacy.enabled=false"]
        return out


@dataclass(frozen=True)
class Sweep:
    name: str
    experiment: Path
    points: tuple[Point, ...]
    overrides: tuple[str, ...]
    source: str

    def point_config(self, point: Point) -> ExperimentConfig:
        return load_experiment(self.experiment, [*self.overrides, *point.overrides()])


def load_sweep(path: str | Path) -> Sweep:
    path = Path(path)
    where = str(path)
    raw = read_toml(path, "sweep")
    if set(raw) != {"sweep"}:
        raise ConfigError(f"{where}: expected exactly one [sweep] table, got {sorted(raw)}")
    s = raw["sweep"]
    unknown = set(s) - SWEEP_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key sweep.{sorted(unknown)[0]}; expected one of: "
                          + ", ".join(sorted(SWEEP_KEYS)))
    if not isinstance(s.get("name"), str) or not s["name"]:
        raise ConfigError(f"{where}: sweep.name = {s.get('name')!r}: expected a non-empty string")
    if not isinstance(s.get("experiment"), str):
        raise ConfigError(f"{where}: sweep.experiment = {s.get('experiment')!r}: expected a path")
    experiment = (path.parent / s["experiment"]).resolve()
    has_z, has_e = "noise_multipliers" in s, "target_epsilons" in s
    if has_z == has_e:
        raise ConfigError(f"{where}: expected exactly one of sweep.noise_multipliers or sweep.target_epsilons")
    key = "noise_multipliers" if has_z else "target_epsilons"
    values = s[key]
    if (not isinstance(values, list) or not values
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in values)):
        raise ConfigError(f"{where}: sweep.{key} = {values!r}: expected a non-empty list of numbers > 0")
    overrides = s.get("set", [])
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise ConfigError(f"{where}: sweep.set = {overrides!r}: expected a list of 'section.key=value' strings")
    base = load_experiment(experiment, overrides)  # validates the base and the overrides
    models = s.get("models") or list(base.experiment.compare) or [base.model.kind]
    if not isinstance(models, list) or not all(m in MODEL_KINDS for m in models):
        raise ConfigError(f"{where}: sweep.models = {models!r}: expected kinds from {MODEL_KINDS}")
    reference = s.get("non_private_reference", True)
    if not isinstance(reference, bool):
        raise ConfigError(f"{where}: sweep.non_private_reference = {reference!r}: expected true or false")
    points = []
    for m in models:
        if reference:
            points.append(Point(f"{m}-nonprivate", m, None, None))
        for v in values:
            v = float(v)
            if has_z:
                points.append(Point(f"{m}-z{v:g}", m, v, None))
            else:
                points.append(Point(f"{m}-eps{v:g}", m, None, v))
    sweep = Sweep(s["name"], experiment, tuple(points), tuple(overrides), where)
    for p in points:
        sweep.point_config(p)  # every point's config is valid before anything runs
    return sweep


def point_status(point_dir: Path) -> str:
    if (point_dir / "summary.json").exists():
        return "done"
    if (point_dir / "checkpoints" / "latest.json").exists():
        return "partial"
    return "new"


def run_sweep(sweep: Sweep, sweep_dir: Path, *, verbose: bool = False, progress=print) -> list[dict]:
    from fl_sim import results
    from fl_sim.simulation import simulate

    sweep_dir.mkdir(parents=True, exist_ok=True)
    if not (sweep_dir / "sweep.json").exists():
        atomic_write_text(sweep_dir / "sweep.json", json.dumps({
            "name": sweep.name, "source": sweep.source, "experiment": str(sweep.experiment),
            "set": list(sweep.overrides), "points": [p.__dict__ for p in sweep.points]}, indent=2) + "\n")
    for i, point in enumerate(sweep.points, 1):
        pdir = sweep_dir / "points" / point.name
        status = point_status(pdir)
        if status == "done":
            progress(f"[sweep] point {i}/{len(sweep.points)} {point.name}: done, skipped")
            continue
        progress(f"[sweep] point {i}/{len(sweep.points)} {point.name}: "
                 f"{'resuming' if status == 'partial' else 'starting'}")
        cfg = sweep.point_config(point)
        pdir.mkdir(parents=True, exist_ok=True)
        if status == "new":
            results.write_run_files(pdir, cfg, {"sweep": str(sweep_dir), "point": point.name})
        simulate(cfg, pdir, resume=True, verbose=verbose, progress=progress)
        write_table(sweep, sweep_dir)
    rows = write_table(sweep, sweep_dir)
    progress(frontier_table(rows))
    progress(f"Sweep directory: {sweep_dir}")
    return rows


def collect(sweep: Sweep, sweep_dir: Path) -> list[dict]:
    rows = []
    for point in sweep.points:
        summary = sweep_dir / "points" / point.name / "summary.json"
        if not summary.exists():
            continue
        final = next(iter(json.loads(summary.read_text())["models"].values()))
        rows.append({
            "point": point.name, "model": point.model, "private": point.private,
            "noise_multiplier": final.get("noise_multiplier", point.noise_multiplier),
            "target_epsilon": point.target_epsilon,
            "epsilon_rdp": final.get("epsilon_rdp"), "epsilon_pld": final.get("epsilon_pld"),
            "delta": final.get("delta"), "rounds": final["rounds"],
            "accuracy": final["eval_accuracy"], "accuracy_no_oov_eos": final["eval_accuracy_no_oov_eos"],
            "perplexity": final["eval_perplexity"], "eval_loss": final["eval_loss"],
            "baseline_accuracy": final["baseline_accuracy"],
            "run_dir": str(sweep_dir / "points" / point.name),
        })
    return rows


def write_table(sweep: Sweep, sweep_dir: Path) -> list[dict]:
    rows = collect(sweep, sweep_dir)
    if not rows:
        return rows
    with open(sweep_dir / "sweep_results.csv.tmp", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (sweep_dir / "sweep_results.csv.tmp").replace(sweep_dir / "sweep_results.csv")
    atomic_write_text(sweep_dir / "sweep_results.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    frontier_plot(rows, sweep_dir / "frontier.png", title=sweep.name)
    atomic_write_text(sweep_dir / "sweep_results.md", frontier_table(rows) + "\n")
    return rows


def frontier_table(rows: list[dict]) -> str:
    lines = ["| model | noise multiplier | epsilon (RDP) | epsilon (PLD) | delta | accuracy | acc. no OOV/EOS | perplexity |",
             "|---|---|---|---|---|---|---|---|"]

    def f(v, fmt):
        return "-" if v is None else format(v, fmt)

    for r in rows:
        z = "non-private" if not r["private"] else f(r["noise_multiplier"], ".4g")
        eps_r = "inf" if not r["private"] else f(r["epsilon_rdp"], ".3g")
        eps_p = "inf" if not r["private"] else f(r["epsilon_pld"], ".3g")
        lines.append(f"| {r['model']} | {z} | {eps_r} | {eps_p} | {f(r['delta'], '.2g')} | "
                     f"{r['accuracy']:.4f} | {r['accuracy_no_oov_eos']:.4f} | {r['perplexity']:.1f} |")
    return "\n".join(lines)


def frontier_plot(rows: list[dict], out: Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    models = sorted({r["model"] for r in rows})
    colors = dict(zip(models, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for m in models:
        priv = sorted((r for r in rows if r["model"] == m and r["private"] and r["epsilon_rdp"] is not None),
                      key=lambda r: r["epsilon_rdp"])
        ref = [r for r in rows if r["model"] == m and not r["private"]]
        for ax, key in zip(axes, ("accuracy", "perplexity")):
            ax.plot([r["epsilon_rdp"] for r in priv], [r[key] for r in priv], marker="o",
                    color=colors[m], label=m)
            for r in ref:
                ax.axhline(r[key], color=colors[m], linestyle="--", alpha=0.7, label=f"{m} non-private")
    base = next((r["baseline_accuracy"] for r in rows), None)
    if base is not None and not math.isnan(base):
        axes[0].axhline(base, color="grey", linestyle=":", label="most-frequent word")
    # A log axis needs a positive epsilon: until a private point has finished (the sweep
    # redraws after every point) only the non-private reference lines exist.
    xscale = "log" if any(r["private"] and (r["epsilon_rdp"] or 0) > 0 for r in rows) else "linear"
    axes[0].set(xlabel="epsilon (RDP accountant)", ylabel="next-word accuracy", xscale=xscale)
    axes[1].set(xlabel="epsilon (RDP accountant)", ylabel="perplexity", xscale=xscale, yscale="log")
    # A log axis over less than a decade has no labelled ticks: perplexity goes log only
    # when the sweep spans one.
    ppl = [r["perplexity"] for r in rows if r.get("perplexity") and r["perplexity"] > 0]
    if ppl and max(ppl) / min(ppl) < 10:
        axes[1].set_yscale("linear")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
