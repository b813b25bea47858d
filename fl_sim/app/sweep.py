"""Sweeps: a grid of full runs over noise multipliers, target epsilons or named variants.

A sweep file names a base experiment and the grid::

    [sweep]
    name = "dp_frontier"
    experiment = "../demo.toml"          # relative to the sweep file
    models = ["si_cifg", "cifg"]          # default: the base experiment's compare list or model
    noise_multipliers = [0.1, 0.3, 1.0]   # or: target_epsilons = [2.0, 8.0]
    non_private_reference = true          # one run per model without DP
    seeds = [0, 1, 2]                     # optional: every point once per seed
    set = ["experiment.rounds=30"]        # overrides applied to every point

Instead of a privacy grid, ``variants`` names sets of overrides, one point per model and
variant (e.g. client optimizers with their own learning rates)::

    [sweep.variants]
    "sgd-lr0.5" = ["client.lr=0.5"]
    "adam-lr0.001" = ['client.optimizer="adam"', "client.lr=0.001"]

``model_set`` gives one model's points their own overrides, e.g. each model at its own best
client learning rate (a fair comparison, as papers make it)::

    [sweep.model_set]
    si_cifg = ["client.lr=1.0"]
    cifg = ["client.lr=0.3"]

Each point is an ordinary run directory under ``<sweep_dir>/points/<point>/``; a point
whose summary.json exists is done, one with a checkpoint is resumed, so an interrupted
sweep continues with ``fl-sim sweep --resume SWEEP_DIR``.

With ``seeds`` (or, when the sweep has none, the base experiment's ``experiment.seeds``)
every point runs once per seed (named ``<point>-s<seed>``; the seed fixes
client sampling, data order, initialisation and DP noise), and the tables and plot show
the mean and standard deviation over seeds: at laptop scale one seed's noise can reorder
neighbouring points of a frontier (docs/privacy.md).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

from fl_sim.config import (MODEL_KINDS, ConfigError, ExperimentConfig, check_dir_name,
                           load_experiment, read_toml)
from fl_sim.results import atomic_write_text
from fl_sim.stats import t_interval

SWEEP_KEYS = {"name", "experiment", "models", "noise_multipliers", "target_epsilons",
              "non_private_reference", "seeds", "set", "variants", "model_set"}


@dataclass(frozen=True)
class Point:
    name: str
    model: str
    noise_multiplier: float | None
    target_epsilon: float | None
    seed: int | None = None  # None: the base experiment's seed
    variant: str | None = None  # a name from sweep.variants
    variant_set: tuple[str, ...] = ()  # its overrides
    model_set: tuple[str, ...] = ()  # sweep.model_set[model]: this model's own overrides

    @property
    def private(self) -> bool:
        return self.noise_multiplier is not None or self.target_epsilon is not None

    def overrides(self) -> list[str]:
        out = ["experiment.compare=[]", f'model.kind="{self.model}"', *self.model_set]
        if self.variant is not None:
            out += list(self.variant_set)  # privacy as the base experiment and sweep.set say
        elif self.noise_multiplier is not None:
            out += ["privacy.enabled=true", f"privacy.noise_multiplier={self.noise_multiplier}",
                    "privacy.target_epsilon=0.0"]
        elif self.target_epsilon is not None:
            out += ["privacy.enabled=true", f"privacy.target_epsilon={self.target_epsilon}"]
        else:
            # No DP, so no clipped sum to insert audit canaries into (the sweep's audit is
            # for its private points).
            out += ["privacy.enabled=false", "audit.canaries=0"]
        if self.seed is not None:
            out += [f"experiment.seed={self.seed}"]
        return out


@dataclass(frozen=True)
class Sweep:
    name: str
    experiment: Path
    points: tuple[Point, ...]
    overrides: tuple[str, ...]
    source: str

    def point_config(self, point: Point) -> ExperimentConfig:
        # The point's own settings are the sweep's, not the user's: they never conflict with
        # the base experiment's (a non-private reference of a DP experiment, say).
        return load_experiment(self.experiment, list(self.overrides), generated=point.overrides())


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
    check_dir_name(where, "sweep.name", s["name"])
    if not isinstance(s.get("experiment"), str):
        raise ConfigError(f"{where}: sweep.experiment = {s.get('experiment')!r}: expected a path")
    experiment = (path.parent / s["experiment"]).resolve()
    has_z, has_e, has_v = "noise_multipliers" in s, "target_epsilons" in s, "variants" in s
    if has_z + has_e + has_v != 1:
        raise ConfigError(f"{where}: expected exactly one of sweep.noise_multipliers, "
                          "sweep.target_epsilons or sweep.variants")
    key = "noise_multipliers" if has_z else "target_epsilons" if has_e else "variants"
    values = s[key]
    if has_v:
        if (not isinstance(values, dict) or not values
                or not all(isinstance(v, list) and all(isinstance(o, str) for o in v)
                           for v in values.values())):
            raise ConfigError(f"{where}: sweep.variants = {values!r}: expected a table of "
                              "name = ['section.key=value', ...]")
    elif (not isinstance(values, list) or not values
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                       and (v >= 0 if has_z else v > 0) for v in values)):
        # z = 0 is clipping without noise (epsilon = inf): the audit sweep's no-noise point.
        raise ConfigError(f"{where}: sweep.{key} = {values!r}: expected a non-empty list of finite "
                          f"numbers {'>= 0' if has_z else '> 0'}")
    overrides = s.get("set", [])
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise ConfigError(f"{where}: sweep.set = {overrides!r}: expected a list of 'section.key=value' strings")
    # Validates the base and the overrides; every point sets privacy.enabled itself, so DP
    # settings in `set` are not "set without privacy.enabled".
    base = load_experiment(experiment, overrides, generated=["privacy.enabled=true"])
    models = s.get("models") or list(base.experiment.compare) or [base.model.kind]
    if not isinstance(models, list) or not all(m in MODEL_KINDS for m in models):
        raise ConfigError(f"{where}: sweep.models = {models!r}: expected kinds from {MODEL_KINDS}")
    reference = s.get("non_private_reference", True)
    if not isinstance(reference, bool):
        raise ConfigError(f"{where}: sweep.non_private_reference = {reference!r}: expected true or false")
    seeds = s.get("seeds")
    if seeds is not None and (not isinstance(seeds, list) or not seeds or len(set(seeds)) != len(seeds)
                              or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                         for v in seeds)):
        raise ConfigError(f"{where}: sweep.seeds = {seeds!r}: expected a non-empty list of distinct "
                          "integers >= 0")
    model_set = s.get("model_set", {})
    if (not isinstance(model_set, dict) or not set(model_set) <= set(models)
            or not all(isinstance(v, list) and all(isinstance(o, str) for o in v)
                       for v in model_set.values())):
        raise ConfigError(f"{where}: sweep.model_set = {model_set!r}: expected a table of "
                          f"model = ['section.key=value', ...] for models among {models}")
    if seeds is None and base.experiment.seeds:  # the base experiment's experiment.seeds
        seeds = list(base.experiment.seeds)
    grid = []
    for m in models:
        own = tuple(model_set.get(m, ()))
        if has_v:
            grid += [Point(f"{m}-{name}", m, None, None, variant=name, variant_set=tuple(sets),
                           model_set=own)
                     for name, sets in values.items()]
            continue
        if reference:
            grid.append(Point(f"{m}-nonprivate", m, None, None, model_set=own))
        for v in values:
            v = float(v)
            if has_z:
                grid.append(Point(f"{m}-z{v:g}", m, v, None, model_set=own))
            else:
                grid.append(Point(f"{m}-eps{v:g}", m, None, v, model_set=own))
    points = grid if seeds is None else [
        dataclasses.replace(p, name=f"{p.name}-s{seed}", seed=seed) for p in grid for seed in seeds]
    sweep = Sweep(s["name"], experiment, tuple(points), tuple(overrides), where)
    for p in points:
        check_dir_name(where, "sweep point", p.name)
        sweep.point_config(p)  # every point's config is valid before anything runs
    return sweep


class PointAborted(RuntimeError):
    """A point's run aborted (every client failing, or below server.min_clients)."""


def point_status(point_dir: Path) -> str:
    from fl_sim.app.cluster import aborted_reason

    if (point_dir / "summary.json").exists():
        # An aborted run wrote a summary too, but a resume retries the round it aborted in.
        return "partial" if aborted_reason(str(point_dir)) else "done"
    if (point_dir / "checkpoints" / "latest.json").exists():
        return "partial"
    return "new"


def run_sweep(sweep: Sweep, sweep_dir: Path, *, verbose: bool = False, progress=print,
              models: list[str] | None = None) -> list[dict]:
    """Run the sweep's points not yet done (only ``models``' when given) and write its tables.

    The tables always cover every finished point of the whole sweep, so processes that run
    different models into the same sweep directory each leave a complete table behind.
    """
    from fl_sim import results
    from fl_sim.app.simulation import simulate

    sweep_dir.mkdir(parents=True, exist_ok=True)
    if not (sweep_dir / "sweep.json").exists():
        atomic_write_text(sweep_dir / "sweep.json", json.dumps({
            # Absolute: --resume may run from another directory.
            "name": sweep.name, "source": str(Path(sweep.source).resolve()),
            "experiment": str(sweep.experiment),
            "set": list(sweep.overrides), "points": [p.__dict__ for p in sweep.points]}, indent=2) + "\n")
    from fl_sim.app.progress import as_progress

    progress = as_progress(progress)
    mine = [p for p in sweep.points if models is None or p.model in models]
    for i, point in enumerate(mine, 1):
        pdir = sweep_dir / "points" / point.name
        status = point_status(pdir)
        if status == "done":
            progress.sweep_point(i, len(mine), f"[sweep] point {i}/{len(mine)} {point.name}: done, skipped")
            continue
        progress.sweep_point(i, len(mine), f"[sweep] point {i}/{len(mine)} {point.name}: "
                             f"{'resuming' if status == 'partial' else 'starting'}")
        cfg = sweep.point_config(point)
        pdir.mkdir(parents=True, exist_ok=True)
        if status == "new":
            results.write_run_files(pdir, cfg, {"sweep": str(sweep_dir), "point": point.name})
        simulate(cfg, pdir, resume=True, verbose=verbose, progress=progress)
        if point_status(pdir) != "done":
            # The next points share its setup and would fail the same way; its numbers are
            # not results (collect() leaves it out of the tables).
            from fl_sim.app.cluster import aborted_reason

            raise PointAborted(f"point {point.name} {aborted_reason(str(pdir))}")
        write_table(sweep, sweep_dir)
    rows = write_table(sweep, sweep_dir)
    progress(frontier_table(table_rows(sweep, rows)))
    progress(f"Sweep directory: {sweep_dir}")
    return rows


def collect(sweep: Sweep, sweep_dir: Path) -> list[dict]:
    rows = []
    for point in sweep.points:
        summary = sweep_dir / "points" / point.name / "summary.json"
        if point_status(summary.parent) != "done":
            continue
        data = json.loads(summary.read_text())
        final = next(iter(data["models"].values()))
        rows.append({
            "point": point.name, "model": point.model, "variant": point.variant,
            "seed": data.get("seed"), "private": point.private,
            "noise_multiplier": final.get("noise_multiplier", point.noise_multiplier),
            "target_epsilon": point.target_epsilon,
            "epsilon_rdp": final.get("epsilon_rdp"), "epsilon_pld": final.get("epsilon_pld"),
            "delta": final.get("delta"),
            # Epsilons of different mechanisms are about different neighbouring relations.
            "mechanism": final.get("mechanism"),
            "neighboring_relation": final.get("neighboring_relation"),
            # Deployment-scale accounting: what epsilon is for, and the run's own epsilon.
            "epsilon_for": final.get("epsilon_for"), "run_epsilon_rdp": final.get("run_epsilon_rdp"),
            "run_delta": final.get("run_delta"), "rounds": final["rounds"],
            # [audit]: the canary estimate (None without an audit).
            "epsilon_emp": final.get("epsilon_emp"),
            "epsilon_emp_ci_low": final.get("epsilon_emp_ci_low"),
            "epsilon_emp_ci_high": final.get("epsilon_emp_ci_high"),
            "word_top1": final.get("eval_word_top1"), "word_top3": final.get("eval_word_top3"),
            "accuracy": final["eval_accuracy"], "accuracy_no_oov_eos": final["eval_accuracy_no_oov_eos"],
            "perplexity": final["eval_perplexity"], "eval_loss": final["eval_loss"],
            "baseline_accuracy": final["baseline_accuracy"],
            "run_dir": str(sweep_dir / "points" / point.name),
        })
    return rows


def over_seeds(rows: list[dict]) -> list[dict]:
    """One row per grid point: accuracy and perplexity averaged over its seeds, with their
    sample standard deviation (``*_sd``, None for one seed), the half-width of their 95%
    t-interval (``*_ci_half_width``, :func:`fl_sim.stats.t_interval`) and the number of
    seeds ``n``.
    The privacy columns are the same for every seed (same z, sampling and rounds)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        key = (r["model"], r.get("variant"), r["private"], r.get("mechanism"),
               r["noise_multiplier"], r["target_epsilon"])
        groups.setdefault(key, []).append(r)
    out = []
    for members in groups.values():
        row = {k: v for k, v in members[0].items() if k not in ("point", "seed", "run_dir")}
        row["n"] = len(members)
        for key in ("word_top1", "word_top3", "accuracy", "accuracy_no_oov_eos", "perplexity", "eval_loss",
                    *(("epsilon_emp",) if any(m.get("epsilon_emp") is not None for m in members) else ())):
            st = t_interval([m.get(key) for m in members])
            row[key], row[f"{key}_sd"], row[f"{key}_ci_half_width"] = st["mean"], st["sd"], st["ci_half_width"]
        out.append(row)
    return out


def table_rows(sweep: Sweep, rows: list[dict]) -> list[dict]:
    """What the table and plot show: per-seed runs averaged when the sweep has seeds."""
    return over_seeds(rows) if any(p.seed is not None for p in sweep.points) else rows


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
    points = table_rows(sweep, rows)
    if points is not rows:
        atomic_write_text(sweep_dir / "sweep_means.jsonl", "".join(json.dumps(r) + "\n" for r in points))
    frontier_plot(points, sweep_dir / "frontier.png", title=sweep.name)
    if any(r.get("epsilon_emp") is not None for r in points):
        audit_plot(points, sweep_dir / "audit.png", title=sweep.name)
    atomic_write_text(sweep_dir / "sweep_results.md", frontier_table(points) + "\n")
    return rows


def frontier_table(rows: list[dict]) -> str:
    """Markdown table; rows averaged over seeds (``n`` > 1) show mean ± sd and the seed count."""
    seeded = any(r.get("n", 1) > 1 for r in rows)
    deploy = deployments(rows)
    scope = f" for {'; '.join(deploy)}" if deploy else ""
    variants = any(r.get("variant") for r in rows)
    head = ("| model |" + (" variant |" if variants else "")
            + f" noise multiplier | epsilon (RDP){scope} | epsilon (PLD){scope} | delta | "
            "mechanism (neighbouring relation) | word top-1 | word top-3 | accuracy | acc. no OOV/EOS | perplexity |")
    if deploy:
        head += " epsilon of the simulated run itself (RDP) | its delta |"
    audited = any(r.get("epsilon_emp") is not None for r in rows)
    if audited:
        head += " epsilon_emp, canary audit (95% CI) |"
    if seeded:
        head += " seeds |"
    lines = [head, "|---" * (head.count("|") - 1) + "|"]

    def f(v, fmt):
        return "-" if v is None else format(v, fmt)

    def pm(r, key, fmt):
        if r.get(key) is None:
            return "-"
        sd = r.get(f"{key}_sd")
        return format(r[key], fmt) + ("" if sd is None else f" ± {sd:{fmt}}")

    for r in rows:
        z = "non-private" if not r["private"] else f(r["noise_multiplier"], ".4g")
        eps_r = "inf" if not r["private"] else f(r["epsilon_rdp"], ".3g")
        eps_p = "inf" if not r["private"] else f(r["epsilon_pld"], ".3g")
        line = (f"| {r['model']} |" + (f" {r.get('variant') or '-'} |" if variants else "")
                + f" {z} | {eps_r} | {eps_p} | {f(r['delta'], '.2g')} | {relation(r)} | "
                f"{pm(r, 'word_top1', '.4f')} | {pm(r, 'word_top3', '.4f')} | {pm(r, 'accuracy', '.4f')} | {pm(r, 'accuracy_no_oov_eos', '.4f')} | "
                f"{pm(r, 'perplexity', '.1f')} |")
        if deploy:
            line += (" - | - |" if not r["private"] else
                     f" {f(r.get('run_epsilon_rdp'), '.3g')} | {f(r.get('run_delta'), '.2g')} |")
        if audited:
            line += f" {emp_cell(r)} |"
        lines.append(line + (f" {r.get('n', 1)} |" if seeded else ""))
    if deploy:
        lines += ["", f"Epsilon (RDP, PLD) is accounted for the stated {'; '.join(deploy)} "
                      "(privacy.accounting_population, privacy.noise_cohort_size), not for the "
                      "runs as executed; their own epsilon is the 'simulated run itself' column."]
    if audited:
        lines += ["", AUDIT_NOTE]
    return "\n".join(lines)


AUDIT_NOTE = (
    "epsilon_emp: one-shot empirical estimate from canary clients inserted into the run "
    "([audit], Andrew et al. 2024; fl_sim/privacy/canaries.py), at each run's delta, with a "
    "95% bootstrap interval over canaries (over seeds: mean ± sd of the estimates). A "
    "lower-bound-style diagnostic of what the final model reveals, not a guarantee; the "
    "accountant's epsilon is the guarantee.")


def emp_cell(r: dict) -> str:
    from fl_sim.privacy.empirical import EPSILON_CAP

    e = r.get("epsilon_emp")
    if e is None:
        return "-"
    text = f">= {e:.3g} (cap)" if e >= EPSILON_CAP else f"{e:.3g}"
    if r.get("epsilon_emp_sd") is not None:
        return text + f" ± {r['epsilon_emp_sd']:.2g}"
    lo, hi = r.get("epsilon_emp_ci_low"), r.get("epsilon_emp_ci_high")
    return text + ("" if lo is None else f" ({lo:.3g}-{hi:.3g})")


def audit_plot(rows: list[dict], out: Path, title: str = "") -> Path:
    """epsilon_emp (with its interval) beside the accountant's epsilon, against z."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    models = sorted({r["model"] for r in rows})
    colors = dict(zip(models, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for m in models:
        pts = sorted((r for r in rows if r["model"] == m and r.get("epsilon_emp") is not None),
                     key=lambda r: r["noise_multiplier"])
        if not pts:
            continue
        zs = [r["noise_multiplier"] for r in pts]
        emp = [r["epsilon_emp"] for r in pts]
        if all(r.get("epsilon_emp_sd") is not None for r in pts):
            err = [[r["epsilon_emp_sd"] for r in pts]] * 2
        else:
            err = [[max(0.0, e - (r.get("epsilon_emp_ci_low") or e)) for e, r in zip(emp, pts)],
                   [max(0.0, (r.get("epsilon_emp_ci_high") or e) - e) for e, r in zip(emp, pts)]]
        ax.errorbar(zs, emp, yerr=err, marker="o", capsize=3, color=colors[m],
                    label=f"{m}: epsilon_emp (canary audit)")
        from fl_sim.privacy.empirical import EPSILON_CAP

        for z, e in zip(zs, emp):
            if e >= EPSILON_CAP:  # the estimator's cap: the true estimate is at least this
                ax.annotate(">= cap", (z, e), textcoords="offset points", xytext=(6, -12),
                            fontsize=8, color=colors[m])
        acc = [(r["noise_multiplier"], r["epsilon_rdp"]) for r in pts
               if r.get("epsilon_rdp") is not None and math.isfinite(r["epsilon_rdp"])]
        if acc:
            ax.plot(*zip(*acc), marker="s", linestyle="--", color=colors[m],
                    label=f"{m}: epsilon (RDP accountant)")
    ax.set(xlabel="noise multiplier z (z = 0: accountant epsilon = inf)", ylabel="epsilon",
           yscale="symlog")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def relation(row: dict) -> str:
    """``dp_ftrl (REPLACE_SPECIAL)``: which mechanism, and the relation its epsilon is for."""
    if not row.get("private"):
        return "-"
    mech = row.get("mechanism") or "dp_fedavg"
    rel = row.get("neighboring_relation")
    return f"{mech} ({rel})" if rel else mech


def deployments(rows: list[dict]) -> list[str]:
    """The stated deployments the rows' epsilons are for (empty: each run's own)."""
    return sorted({r["epsilon_for"] for r in rows if r.get("private") and r.get("epsilon_for")})


def frontier_xlabel(rows: list[dict]) -> str:
    """The frontier's x axis: whose epsilon it is, and under deployment-scale accounting
    the range of the simulated runs' own epsilons."""
    deploy = deployments(rows)
    if not deploy:
        return "epsilon (RDP accountant)"
    run_eps = [r["run_epsilon_rdp"] for r in rows if r.get("run_epsilon_rdp") is not None]
    return (f"epsilon (RDP) for the stated {'; '.join(deploy)}, not for these runs"
            + (f"\n(the simulated runs themselves: epsilon {min(run_eps):.3g} to {max(run_eps):.3g})"
               if run_eps else ""))


def frontier_plot(rows: list[dict], out: Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    models = sorted({r["model"] for r in rows})
    colors = dict(zip(models, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for m in models:
        priv = sorted((r for r in rows if r["model"] == m and r["private"] and r["epsilon_rdp"] is not None
                       and math.isfinite(r["epsilon_rdp"])),
                      key=lambda r: r["epsilon_rdp"])
        ref = [r for r in rows if r["model"] == m and not r["private"]]
        for ax, key in zip(axes, ("accuracy", "perplexity")):
            # Averaged over seeds: error bars of one standard deviation.
            err = [r.get(f"{key}_sd") or 0.0 for r in priv]
            ax.errorbar([r["epsilon_rdp"] for r in priv], [r[key] for r in priv],
                        yerr=err if any(err) else None, marker="o", capsize=3, color=colors[m], label=m)
            for r in ref:
                ax.axhline(r[key], color=colors[m], linestyle="--", alpha=0.7,
                           label=f"{m} {r.get('variant') or 'non-private'}")
                if r.get(f"{key}_sd"):
                    ax.axhspan(r[key] - r[f"{key}_sd"], r[key] + r[f"{key}_sd"], color=colors[m], alpha=0.1)
    base = next((r["baseline_accuracy"] for r in rows), None)
    if base is not None and not math.isnan(base):
        axes[0].axhline(base, color="grey", linestyle=":", label="most-frequent word")
    # A log axis needs a positive epsilon: until a private point has finished (the sweep
    # redraws after every point) only the non-private reference lines exist.
    # z = 0 points (epsilon = inf) are not drawn, so they do not count either.
    xscale = "log" if any(r["private"] and math.isfinite(r["epsilon_rdp"] or 0) and (r["epsilon_rdp"] or 0) > 0
                          for r in rows) else "linear"
    xlabel = frontier_xlabel(rows)
    axes[0].set(xlabel=xlabel, ylabel="next-word accuracy", xscale=xscale)
    axes[1].set(xlabel=xlabel, ylabel="perplexity", xscale=xscale, yscale="log")
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
