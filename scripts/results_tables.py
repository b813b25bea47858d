"""The tables and plots of docs/results.md, computed from finished sweep directories.

Every number comes from the points' own summary.json files; the statistics are
fl_sim.stats's (Student-t intervals over seeds, paired differences seed by seed), the same
code `fl-sim compare` and `make demo` use. Run it again after a sweep finishes more points:
it reads whatever is done and says how many seeds each cell has.

    .venv/bin/python scripts/results_tables.py lr RESULTS/client_lr/<id> --plot docs/img/results_client_lr.png
    .venv/bin/python scripts/results_tables.py pair RESULTS/client_lr_best/<id>
    .venv/bin/python scripts/results_tables.py optimizer RESULTS/client_lr/<id> RESULTS/client_optimizer/<id>
    .venv/bin/python scripts/results_tables.py frontier RESULTS/dp_frontier_deploy/<id> --plot docs/img/results_dp_frontier.png

The headline is word top-1, smoothed (the mean of the last 3 evaluations, rounds 30-40):
one evaluation of a model at this scale moves by more than the differences between models.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

from fl_sim import stats

HEADLINE = "smoothed_word_top1"
COLUMNS = [("smoothed_word_top1", "word top-1, smoothed", ".4f"),
           ("eval_word_top1", "word top-1, final", ".4f"),
           ("eval_word_top3", "word top-3, final", ".4f"),
           ("eval_perplexity", "perplexity", ".1f")]
LABEL = {"si_cifg": "SI-CIFG", "cifg": "CIFG", "si_transformer": "SI-Transformer",
         "transformer": "Transformer"}


def load_points(sweep_dir: Path) -> list[dict]:
    """One row per finished point: its sweep.json entry plus its final summary row."""
    spec = json.loads((sweep_dir / "sweep.json").read_text())
    rows = []
    for p in spec["points"]:
        summary = sweep_dir / "points" / p["name"] / "summary.json"
        if not summary.exists():
            continue
        data = json.loads(summary.read_text())
        final = next(iter(data["models"].values()))
        rows.append({**p, **final, "sweep": str(sweep_dir), **clip_settings(summary.parent)})
    return rows


AGGREGATION_ONLY_CLIP = 1e5  # a clip no update of these models reaches (norms are 1-10)


def clip_settings(point_dir: Path) -> dict:
    """The point's (initial) clip norm and whether it adapts; clip None without privacy."""
    import tomllib

    cfg = point_dir / "config.resolved.toml"
    if not cfg.is_file():
        return {}
    p = tomllib.loads(cfg.read_text()).get("privacy", {})
    if not p.get("enabled"):
        return {"clip_norm": None}
    return {"clip_norm": float(p.get("clip_norm", 0.0)), "adaptive_clipping": bool(p.get("adaptive_clipping")),
            "noise_cohort_size": p.get("noise_cohort_size") or None}


def deploy_label(r: dict) -> str:
    """"m' 100": the noise cohort of a private point's stated deployment ('' for none)."""
    m = r.get("noise_cohort_size")
    return f"m' {int(m)}" if m and r.get("target_epsilon") is not None else ""


DIVERGED = 1e5  # a perplexity this large is a diverged run (the cap is exp(700))


def diverged(v) -> bool:
    """A perplexity of a diverged run: past DIVERGED, or NaN (weights that overflowed give a
    NaN loss, which the capped exp passes through)."""
    return v is not None and (math.isnan(v) or abs(v) >= DIVERGED)


def cell(values: list[float], fmt: str, dead: int = 0) -> str:
    """Mean ± 95% CI half-width, or how many runs diverged: ``dead`` counts the runs whose
    perplexity diverged (their other metrics are a dead model's, never averaged)."""
    big = max(dead, sum(1 for v in values if diverged(v)))
    if big:
        return f"diverged in {big} of {len(values)}"
    return stats.format_mean(stats.t_interval(values), fmt)


def grouped(rows: list[dict], key) -> dict:
    out = defaultdict(list)
    for r in rows:
        out[key(r)].append(r)
    return out


def lr_of(r: dict) -> float:
    cfg = Path(r["sweep"]) / "points" / r["name"] / "config.resolved.toml"
    import tomllib
    return float(tomllib.loads(cfg.read_text())["client"]["lr"])


def optimizer_of(r: dict) -> str:
    return r.get("client_optimizer") or "sgd"


def table(rows: list[dict], key_cols: list[tuple[str, object]]) -> str:
    """Mean ± 95% CI half-width of each column, one line per group of ``key_cols``."""
    head = "| " + " | ".join(name for name, _ in key_cols) + " | " + " | ".join(
        c[1] for c in COLUMNS) + " | seeds |"
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    groups = grouped(rows, lambda r: tuple(f(r) for _, f in key_cols))
    for key in sorted(groups, key=lambda k: tuple(str(x) if not isinstance(x, float) else f"{x:012.5f}"
                                                  for x in k)):
        members = groups[key]
        seeds = sorted(m["seed"] for m in members)
        dead = sum(1 for m in members if diverged(m.get("eval_perplexity")))
        lines.append("| " + " | ".join(LABEL.get(k, k) if isinstance(k, str) else f"{k:g}" for k in key)
                     + " | " + " | ".join(cell([m.get(c) for m in members], fmt, dead) for c, _, fmt in COLUMNS)
                     + f" | {len(members)} ({', '.join(map(str, seeds))}) |")
    return "\n".join(lines)


def best_by(rows: list[dict], group, choice) -> dict:
    """For each group, the choice with the highest mean headline over its seeds; a choice
    that diverged in any seed is never the best (unless every choice did)."""
    out = {}
    for g, members in grouped(rows, group).items():
        choices = grouped(members, choice)
        alive = {c: ms for c, ms in choices.items()
                 if not any(diverged(m.get("eval_perplexity")) for m in ms)} or choices
        means = {c: stats.t_interval([m[HEADLINE] for m in ms])["mean"] for c, ms in alive.items()}
        out[g] = max(means, key=lambda c: means[c])
    return out


def paired(rows_a: list[dict], rows_b: list[dict], metric: str = HEADLINE,
           higher_is_better: bool = True) -> dict:
    by_seed_a = {r["seed"]: r[metric] for r in rows_a}
    by_seed_b = {r["seed"]: r[metric] for r in rows_b}
    seeds = sorted(set(by_seed_a) & set(by_seed_b))
    return stats.paired_difference([by_seed_a[s] for s in seeds], [by_seed_b[s] for s in seeds],
                                   higher_is_better=higher_is_better)


def pair_lines(rows: list[dict], models: list[str], group_label: str = "") -> list[str]:
    """Paired differences (model A - model B) of the headline, top-3 and perplexity."""
    a, b = models
    ra = [r for r in rows if r["model"] == a]
    rb = [r for r in rows if r["model"] == b]
    out = []
    for metric, name, hib in ((HEADLINE, "word top-1, smoothed", True),
                              ("eval_word_top3", "word top-3, final", True),
                              ("eval_perplexity", "perplexity", False)):
        # A run whose perplexity diverged has no meaningful accuracy either (a dead model's
        # top-1 is noise around 0): it stops every comparison it is in.
        if any(diverged(r.get(metric)) or diverged(r.get("eval_perplexity")) for r in ra + rb):
            out.append(f"- {group_label}{name}: not compared (a run diverged)")
            continue
        d = paired(ra, rb, metric, hib)
        out.append(f"- {group_label}{name}: "
                   + stats.format_difference(LABEL[a], LABEL[b], d, ".1f" if metric == "eval_perplexity" else ".4f"))
    return out


def cmd_lr(args) -> None:
    rows = [r for d in args.sweep_dirs for r in load_points(Path(d))]
    print(table(rows, [("model", lambda r: r["model"]), ("client lr", lr_of)]))
    best = best_by(rows, lambda r: r["model"], lr_of)
    print()
    for m, lr in best.items():
        print(f"- best client lr for {LABEL[m]} (highest mean smoothed word top-1 over its seeds): {lr:g}")
    models = sorted(best, key=lambda m: m.startswith("si_"), reverse=True)
    if len(models) == 2:
        for lr in sorted({lr_of(r) for r in rows}):
            print("\n".join(pair_lines([r for r in rows if lr_of(r) == lr], models, f"lr {lr:g}, ")))
    if args.plot:
        plot_curves(rows, lr_of, "client learning rate (log scale)", args.plot, logx=True)


def cmd_pair(args) -> None:
    rows = [r for d in args.sweep_dirs for r in load_points(Path(d))]
    print(table(rows, [("model", lambda r: r["model"]), ("client lr", lr_of)]))
    models = sorted({r["model"] for r in rows}, key=lambda m: m.startswith("si_"), reverse=True)
    if len(models) == 2:
        print()
        print("\n".join(pair_lines(rows, models)))


def cmd_optimizer(args) -> None:
    rows = [r for d in args.sweep_dirs for r in load_points(Path(d))]
    print(table(rows, [("model", lambda r: r["model"]), ("client optimizer", optimizer_of),
                       ("client lr", lr_of)]))
    best = best_by(rows, lambda r: (r["model"], optimizer_of(r)), lr_of)
    print()
    for (m, opt), lr in sorted(best.items()):
        state = next(r["client_optimizer_state_bytes"] for r in rows
                     if r["model"] == m and optimizer_of(r) == opt)
        print(f"- {LABEL[m]}, {opt}: best lr {lr:g}; optimizer state per client {state / 2**20:.2f} MiB")
    for m in sorted({r["model"] for r in rows}):
        sgd = [r for r in rows if r["model"] == m and optimizer_of(r) == "sgd" and lr_of(r) == best.get((m, "sgd"))]
        adam = [r for r in rows if r["model"] == m and optimizer_of(r) == "adam" and lr_of(r) == best.get((m, "adam"))]
        if sgd and adam:
            d = paired(sgd, adam)
            print(f"- {LABEL[m]}: " + stats.format_difference("SGD", "Adam", d)
                  + " (word top-1 smoothed, each at its best lr)")

    def at_best(m, opt):
        return [r for r in rows if r["model"] == m and optimizer_of(r) == opt and lr_of(r) == best.get((m, opt))]

    # The paper's question: can SGD clients with the scale-invariant model replace adaptive
    # clients with the plain one? (Same seeds, so same split, sampling and data order.)
    si_sgd, cifg_adam = at_best("si_cifg", "sgd"), at_best("cifg", "adam")
    if si_sgd and cifg_adam:
        d = paired(si_sgd, cifg_adam)
        print("- " + stats.format_difference("SI-CIFG with SGD", "CIFG with Adam", d)
              + " (word top-1 smoothed, each at its best lr)")


def epsilon_of(r: dict) -> float:
    return float("inf") if r.get("target_epsilon") is None else float(r["target_epsilon"])


def relation_of(r: dict) -> str:
    """Which mechanism and neighbouring relation a point's epsilon is about (DP-FTRL's
    REPLACE_SPECIAL is not DP-FedAvg's relation: equal epsilons are different statements)."""
    if r.get("target_epsilon") is None and not r.get("noise_multiplier"):
        return "non-private"
    rel = r.get("neighboring_relation") or (r.get("privacy") or {}).get("neighboring_relation")
    return f"{r.get('mechanism') or 'dp_fedavg'} ({rel or '?'})"


def frontier_point(r: dict) -> str:
    """'non-private', 'clipping only' (a fixed, negligible z), 'aggregation only' (the same
    with a clip no update reaches) or 'epsilon X'."""
    if r.get("target_epsilon") is not None:
        return f"epsilon {float(r['target_epsilon']):g}"
    if not r.get("noise_multiplier"):
        return "non-private"
    return "aggregation only" if (r.get("clip_norm") or 0.0) >= AGGREGATION_ONLY_CLIP else "clipping only"


def clip_label(r: dict) -> str:
    """'clip 3': a DP point's clip norm (the initial one, when adaptive). Fixed and adaptive
    clipping from the same C share a label: that difference is the mechanism's (table f
    compares them), a different C is another experiment."""
    c = r.get("clip_norm")
    return "" if c is None else f"clip {c:g}"


def clip_groups(rows: list[dict]) -> list[str]:
    """The clip settings of the points that clip (private and clipping-only ones)."""
    return sorted({clip_label(r) for r in rows if frontier_point(r) not in ("non-private", "aggregation only")
                   and clip_label(r)})


def cmd_frontier(args) -> None:
    rows = [r for d in args.sweep_dirs for r in load_points(Path(d))]
    clips = clip_groups(rows)
    # Points that clip differently (sweeps with another initial clip) are other points:
    # grouped, labelled and compared apart, only within their own clip setting.
    by_clip = len(clips) > 1
    # So are private points of different stated deployments (another noise cohort m'): their
    # epsilons are about different noise. The clipping-only and aggregation-only references
    # have no noise to speak of and serve every deployment.
    deploys = sorted({deploy_label(r) for r in rows if deploy_label(r)})
    by_deploy = len(deploys) > 1
    key_cols = [("model", lambda r: r["model"]), ("mechanism (relation)", relation_of)]
    if by_clip:
        key_cols.append(("clip", lambda r: clip_label(r) or "-"))
    if by_deploy:
        key_cols.append(("noise cohort", lambda r: deploy_label(r) or "-"))
    key_cols += [("target epsilon", epsilon_of), ("noise multiplier z", lambda r: r.get("noise_multiplier") or 0.0)]
    print(table(rows, key_cols))
    print("\n(target epsilon inf with z > 0: the clipping-only reference, no privacy, or with a clip "
          f"of {AGGREGATION_ONLY_CLIP:g} or more, the aggregation-only reference, which clips nothing; "
          "with z = 0: non-private, no clipping)")
    models = sorted({r["model"] for r in rows}, key=lambda m: m.startswith("si_"), reverse=True)
    mechs = sorted({relation_of(r) for r in rows if r.get("target_epsilon") is not None})
    # Several mechanisms in one table: every comparison stays within one mechanism (and its
    # neighbouring relation), except the mechanism-vs-mechanism lines, which say so.
    several = len(mechs) > 1

    def point_of(r: dict) -> str:
        name = frontier_point(r)
        if by_clip and name not in ("non-private", "aggregation only"):
            name = f"{name}, {clip_label(r)}"
        if by_deploy and deploy_label(r):
            name = f"{name}, {deploy_label(r)}"
        return f"{relation_of(r)}, {name}" if several and r.get("target_epsilon") is not None else name

    def order(k: str):
        base = k.split(", clip", 1)[0].split(", m'", 1)[0]
        return (k == "non-private", k == "aggregation only", base.startswith("clipping only"),
                k.rsplit(", epsilon", 1)[0] if ", epsilon" in k else "",
                k[len(base):], float(base.rsplit(" ", 1)[1]) if "epsilon" in base else 0.0)

    points = sorted({point_of(r) for r in rows}, key=order)
    if len(models) == 2:
        print()
        for point in points:
            print("\n".join(pair_lines([r for r in rows if point_of(r) == point], models,
                                       f"{point}, ")[:1]))
    def difference(m: str, name_a: str, rows_a: list[dict], name_b: str, rows_b: list[dict]) -> str:
        bad = sorted({r["seed"] for r in rows_a + rows_b if diverged(r.get("eval_perplexity"))})
        if bad:
            return (f"- {LABEL[m]}: {name_a} − {name_b}: not compared (diverged in seed"
                    f"{'s' if len(bad) > 1 else ''} {', '.join(map(str, bad))})")
        return f"- {LABEL[m]}: " + stats.format_difference(name_a, name_b, paired(rows_a, rows_b))

    for m in models:
        mine = [r for r in rows if r["model"] == m]
        by = {k: [r for r in mine if point_of(r) == k] for k in points}
        nonpriv, agg = by.get("non-private"), by.get("aggregation only")
        if agg and nonpriv:
            print(difference(m, "aggregation only", agg, "non-private", nonpriv))
        for c in clips or [""]:
            suffix = f", {c}" if by_clip else ""
            in_c = [r for r in mine if not by_clip or clip_label(r) == c]
            clip = by.get(f"clipping only{suffix}")
            name_clip = f"clipping only{suffix}"
            tops = {}  # deployment -> {mechanism -> (its rows at its largest epsilon, that epsilon)}
            for dep in deploys if by_deploy else [""]:
                dsuffix = suffix + (f", {dep}" if by_deploy else "")
                in_cd = [r for r in in_c if not by_deploy or deploy_label(r) == dep]
                top = tops[dep] = {}
                for mech in mechs:
                    own = [r for r in in_cd if r.get("target_epsilon") is not None and relation_of(r) == mech]
                    eps = sorted({epsilon_of(r) for r in own})
                    pre = f"{mech}, " if several else ""
                    if eps:
                        top[mech] = ([r for r in own if epsilon_of(r) == eps[-1]],
                                     f"{pre}epsilon {eps[-1]:g}{dsuffix}")
                    if len(eps) >= 2:
                        print(difference(m, top[mech][1], top[mech][0], f"epsilon {eps[0]:g}{dsuffix}",
                                         [r for r in own if epsilon_of(r) == eps[0]]))
            if clip and nonpriv:
                print(difference(m, name_clip, clip, "non-private", nonpriv))
            if clip and agg:
                print(difference(m, name_clip, clip, "aggregation only", agg))
            for dep, top in tops.items():
                dsuffix = suffix + (f", {dep}" if by_deploy else "")
                in_cd = [r for r in in_c if not by_deploy or deploy_label(r) == dep]
                if clip and relation_of(clip[0]) in top:  # the clipping reference of that mechanism
                    rows_top, name = top[relation_of(clip[0])]
                    print(difference(m, name, rows_top, name_clip, clip))
                    if by_deploy:  # and the least private point too: there the noise is largest
                        low = [r for r in in_cd if r.get("target_epsilon") is not None
                               and relation_of(r) == relation_of(clip[0])]
                        e0 = min(epsilon_of(r) for r in low)
                        print(difference(m, f"epsilon {e0:g}{dsuffix}", [r for r in low if epsilon_of(r) == e0],
                                         name_clip, clip))
        # The same epsilon for two stated deployments: what ten times less noise cohort costs.
        for i, d1 in enumerate(deploys if by_deploy else []):
            for d2 in deploys[i + 1:]:
                for e in sorted({epsilon_of(r) for r in mine if r.get("target_epsilon") is not None}):
                    for c in clips or [""]:
                        sfx = f", {c}" if by_clip else ""
                        r1 = [r for r in mine if point_of(r) == f"epsilon {e:g}{sfx}, {d1}"]
                        r2 = [r for r in mine if point_of(r) == f"epsilon {e:g}{sfx}, {d2}"]
                        if r1 and r2:
                            print(difference(m, f"epsilon {e:g}{sfx}, {d1}", r1, f"epsilon {e:g}{sfx}, {d2}", r2))
        # One clip setting's clipping-only reference against another's: what the clip costs.
        for i, c1 in enumerate(clips if by_clip else []):
            for c2 in clips[i + 1:]:
                r1, r2 = by.get(f"clipping only, {c1}"), by.get(f"clipping only, {c2}")
                if r1 and r2:
                    print(difference(m, f"clipping only, {c2}", r2, f"clipping only, {c1}", r1))
        # Mechanism against mechanism at the same target epsilon: different relations.
        for i, a in enumerate(mechs):
            for b in mechs[i + 1:]:
                for c in clips or [""]:
                    in_c = [r for r in mine if not by_clip or clip_label(r) == c]
                    for e in sorted({epsilon_of(r) for r in in_c if r.get("target_epsilon") is not None}):
                        ra = [r for r in in_c if relation_of(r) == a and epsilon_of(r) == e]
                        rb = [r for r in in_c if relation_of(r) == b and epsilon_of(r) == e]
                        if ra and rb:
                            print(difference(m, a, ra, b, rb).replace(
                                f"- {LABEL[m]}: ", f"- {LABEL[m]}, epsilon {e:g}{f', {c}' if by_clip else ''} "
                                "(different neighbouring relations): ", 1))
    run_eps = [r.get("run_epsilon_rdp") for r in rows if r.get("run_epsilon_rdp") and r.get("target_epsilon")]
    if run_eps:
        print(f"- epsilon of the simulated runs themselves (RDP): {min(run_eps):.3g} to {max(run_eps):.3g}")
    if args.plot:
        private = [r for r in rows if r.get("target_epsilon") is not None]
        plot_curves(private, epsilon_of, "target epsilon (log scale) for the stated deployment", args.plot,
                    logx=True, references=[r for r in rows if r.get("target_epsilon") is None],
                    line_of=(lambda r: (r["model"], ", ".join(
                        ([relation_of(r)] if several else []) + ([clip_label(r)] if by_clip else [])
                        + ([deploy_label(r)] if by_deploy else []))))
                    if several or by_clip or by_deploy else None)


def plot_curves(rows: list[dict], x_of, xlabel: str, path: str, logx: bool = False,
                references: list[dict] | None = None, line_of=None) -> None:
    """Headline mean vs x per model (or per ``line_of(row)``: (model, label)), with its 95%
    t-interval as a band."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    lines = grouped(rows, line_of or (lambda r: (r["model"], None)))
    drawn_refs = set()
    for i, ((model, label), members) in enumerate(sorted(lines.items(), key=lambda kv: str(kv[0]))):
        xs, mean, lo, hi, few = [], [], [], [], []
        for x, ms in sorted(grouped(members, x_of).items()):
            st = stats.t_interval([m[HEADLINE] for m in ms])
            half = st["ci_half_width"] or 0.0
            xs.append(x), mean.append(st["mean"]), lo.append(st["mean"] - half), hi.append(st["mean"] + half)
            few.append(len(ms) < 3)
        line, = ax.plot(xs, mean, marker="o", label=LABEL[model] + (f", {label}" if label else ""))
        ax.fill_between(xs, lo, hi, alpha=0.2, color=line.get_color())
        # Points with fewer than 3 seeds (a sweep not finished) are drawn hollow.
        ax.plot([x for x, f in zip(xs, few) if f], [m for m, f in zip(mean, few) if f], "o",
                markerfacecolor="white", color=line.get_color())
        refs_of = grouped([r for r in (references or []) if r["model"] == model],
                          lambda r: (frontier_point(r), clip_label(r) if frontier_point(r) == "clipping only" else ""))
        # Several clipping-only references (sweeps with different clips): each is labelled.
        several_clips = len({c for k, c in refs_of if k == "clipping only"}) > 1
        styles = {"non-private": "--", "aggregation only": (0, (1, 1)), "clipping only": "-."}
        for (kind, c), refs in sorted(refs_of.items()):
            if (model, kind, c) in drawn_refs:
                continue
            drawn_refs.add((model, kind, c))
            ax.axhline(stats.t_interval([r[HEADLINE] for r in refs])["mean"], color=line.get_color(),
                       linestyle=styles[kind], alpha=0.5 if several_clips and c else 1.0,
                       label=f"{LABEL[model]}, {kind}" + (f" ({c})" if several_clips and c else ""))
    base = [r.get("baseline_constant_word_top1") for r in rows if r.get("baseline_constant_word_top1")]
    if base:
        ax.axhline(base[0], color="grey", linestyle=":", label="best constant word")
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("word top-1 (smoothed), mean and 95% CI")
    ax.set_title("hollow: fewer than 3 seeds finished", fontsize=8, loc="right")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"\n(plot: {path})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("table", choices=["lr", "pair", "optimizer", "frontier"])
    ap.add_argument("sweep_dirs", nargs="+")
    ap.add_argument("--plot", help="write the plot here (PNG)")
    ap.add_argument("--rows", help="also write the per-seed rows behind the table here (CSV)")
    args = ap.parse_args(argv)
    for d in args.sweep_dirs:
        if not (Path(d) / "sweep.json").exists():
            print(f"error: {d}: not a sweep directory (no sweep.json)", file=sys.stderr)
            return 2
    {"lr": cmd_lr, "pair": cmd_pair, "optimizer": cmd_optimizer, "frontier": cmd_frontier}[args.table](args)
    if args.rows:
        write_rows([r for d in args.sweep_dirs for r in load_points(Path(d))], args.rows)
    return 0


def write_rows(rows: list[dict], path: str) -> None:
    import csv

    fields = ["name", "model", "seed", "client_optimizer", "client_lr", "target_epsilon",
              "noise_multiplier", "clip_norm", *[c for c, _, _ in COLUMNS], "rounds_completed"]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({**r, "client_optimizer": optimizer_of(r), "client_lr": lr_of(r)})


if __name__ == "__main__":
    sys.exit(main())
