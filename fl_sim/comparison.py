"""Per-seed results of one or more models: rows, mean ± CI tables and paired verdicts.

Shared by a run's summary (``summary.json`` / ``summary.md``, one or many seeds) and by
``fl-sim compare``. A *row* is one model trained with one seed: the metrics of its final
evaluation (the ``final`` line of its metrics.jsonl) under short names. The statistics
are :mod:`fl_sim.stats`.
"""

from __future__ import annotations

from dataclasses import dataclass

from fl_sim import stats

#: The headline metric: top-1 accuracy over in-vocabulary word targets.
HEADLINE = "word_top1"


@dataclass(frozen=True)
class Metric:
    key: str                 # the final row's key
    label: str
    higher_is_better: bool = True
    fmt: str = ".4f"


#: Metrics a row carries, by short name, in table order.
METRICS = {
    "word_top1": Metric("eval_word_top1", "word top-1"),
    "word_top3": Metric("eval_word_top3", "word top-3"),
    "smoothed_word_top1": Metric("smoothed_word_top1", "word top-1, mean of last evals"),
    "smoothed_word_top3": Metric("smoothed_word_top3", "word top-3, mean of last evals"),
    "accuracy_no_oov_eos": Metric("eval_accuracy_no_oov_eos", "acc. no OOV/EOS"),
    "accuracy": Metric("eval_accuracy", "accuracy (all targets)"),
    "perplexity": Metric("eval_perplexity", "perplexity", higher_is_better=False, fmt=".1f"),
    "loss": Metric("eval_loss", "eval loss", higher_is_better=False, fmt=".4f"),
}
#: Baselines a row carries (computed on that seed's evaluation set), by short name.
BASELINES = {
    "constant_word_top1": Metric("baseline_constant_word_top1", "best constant, word top-1"),
    "constant_word_top3": Metric("baseline_constant_word_top3", "best constant, word top-3"),
    "unigram_word_top1": Metric("baseline_unigram_word_top1", "unigram, word top-1"),
    "unigram_word_top3": Metric("baseline_unigram_word_top3", "unigram, word top-3"),
    "constant_in_vocab": Metric("baseline_constant_in_vocab_accuracy_no_oov_eos",
                                "best constant, acc. no OOV/EOS"),
    "constant_all": Metric("baseline_constant_all_accuracy", "best constant, accuracy"),
}
#: What a comparison reports a paired difference for (the verdict line uses the first two).
COMPARED = ("word_top1", "word_top3", "smoothed_word_top1", "accuracy_no_oov_eos", "perplexity")

LABELS = {"si_cifg": "SI-CIFG", "cifg": "CIFG", "transformer": "Transformer",
          "si_transformer": "SI-Transformer"}


def label(name: str) -> str:
    return LABELS.get(name, name)


def metric_names(extra: tuple[str, ...] = ()) -> list[str]:
    return [*METRICS, *BASELINES, *extra]


def row(final: dict, *, model: str, seed: int | None, run_dir: str) -> dict:
    """One (model, seed) row from a final metrics row; missing metrics are ``None``."""
    out = {"model": model, "seed": seed, "run_dir": run_dir,
           "rounds_completed": final.get("rounds_completed"),
           "stopped_reason": final.get("stopped_reason"),
           "word_top1_se": final.get("eval_word_top1_se"),
           "eval_clients": final.get("eval_clients"),
           "word_targets": final.get("eval_word_tokens")}
    for name, m in {**METRICS, **BASELINES}.items():
        out[name] = final.get(m.key)
    return out


def group_stats(rows: list[dict], models: list[str], names: list[str],
                confidence: float = stats.CONFIDENCE) -> dict:
    """``{model: {metric: t_interval over that model's rows}}``."""
    return {m: {k: stats.t_interval([r[k] for r in rows if r["model"] == m], confidence)
                for k in names} for m in models}


def paired(rows: list[dict], a: str, b: str, metric: str,
           confidence: float = stats.CONFIDENCE) -> dict:
    """A - B on ``metric``, paired by seed (only seeds both models finished)."""
    by_seed = {m: {r["seed"]: r[metric] for r in rows if r["model"] == m} for m in (a, b)}
    seeds = sorted(s for s in by_seed[a] if s in by_seed[b]
                   and by_seed[a][s] is not None and by_seed[b][s] is not None)
    d = stats.paired_difference([by_seed[a][s] for s in seeds], [by_seed[b][s] for s in seeds],
                                confidence=confidence,
                                higher_is_better=METRICS[metric].higher_is_better
                                if metric in METRICS else True)
    d.update(a=a, b=b, metric=metric, seeds=seeds,
             text=f"{METRICS[metric].label if metric in METRICS else metric}: "
                  + stats.format_difference(label(a), label(b), d,
                                            METRICS[metric].fmt if metric in METRICS else ".4f"))
    return d


def comparisons(rows: list[dict], models: list[str], names: tuple[str, ...] = COMPARED,
                confidence: float = stats.CONFIDENCE) -> list[dict]:
    """Paired differences for every pair of models (in the given order) and metric."""
    out = []
    for i, a in enumerate(models):
        for b in models[i + 1:]:
            out += [paired(rows, a, b, k, confidence) for k in names]
    return out


def summarize_rows(rows: list[dict], models: list[str], confidence: float = stats.CONFIDENCE) -> dict:
    """The statistics part of summary.json: ``stats``, ``baselines``, ``comparisons``."""
    per_model = group_stats(rows, models, list(METRICS), confidence)
    base = {k: stats.t_interval([r[k] for r in rows if r["model"] == models[0]], confidence)
            for k in BASELINES} if models else {}
    return {"headline": HEADLINE, "confidence": confidence, "stats": per_model,
            "baselines": base, "comparisons": comparisons(rows, models, confidence=confidence)}


def seeds_table(summary: dict) -> str:
    """Markdown: per model, mean ± CI half-width over seeds of the main metrics, then the
    baselines and the paired verdicts."""
    st = summary["stats"]
    models = list(st)
    shown = ["word_top1", "word_top3", "smoothed_word_top1", "accuracy_no_oov_eos", "perplexity"]
    n = max((st[m][HEADLINE]["n"] for m in models), default=0)
    pct = f"{100 * summary['confidence']:g}%"
    head = "| model | seeds | " + " | ".join(METRICS[k].label for k in shown) + " | sd of word top-1 |"
    lines = [f"Mean ± {pct} t-interval half-width over seeds (n = {n}).", "",
             head, "|---" * (head.count("|") - 1) + "|"]
    for m in models:
        s = st[m]
        sd = s[HEADLINE]["sd"]
        lines.append(f"| {label(m)} | {s[HEADLINE]['n']} | "
                     + " | ".join(stats.format_mean(s[k], METRICS[k].fmt) for k in shown)
                     + f" | {'-' if sd is None else format(sd, '.4f')} |")
    lines += ["", baselines_text(summary["baselines"])]
    if summary["comparisons"]:
        lines += ["", "Paired by seed (same split, sampling and data order for both models):", ""]
        lines += [f"- {c['text']}" for c in summary["comparisons"]]
    return "\n".join(lines)


def baselines_text(base: dict) -> str:
    """One sentence with the baselines (means over seeds) on the same evaluation sets."""
    def v(k):
        s = base.get(k) or {}
        return "-" if s.get("mean") is None else format(s["mean"], ".4f")

    return (f"Baselines on the same evaluation set: best constant word top-1 {v('constant_word_top1')}, "
            f"top-3 {v('constant_word_top3')}; unigram (training counts) word top-1 "
            f"{v('unigram_word_top1')}, top-3 {v('unigram_word_top3')}; best constant over "
            f"in-vocab targets {v('constant_in_vocab')} (acc. no OOV/EOS), over all targets "
            f"{v('constant_all')} (accuracy).")


def verdict_lines(summary: dict) -> list[str]:
    """The headline comparisons in words (word top-1 and top-3)."""
    return [c["text"] for c in summary["comparisons"] if c["metric"] in ("word_top1", "word_top3")]


# --------------------------------------------------------------------------- fl-sim compare


class CompareError(ValueError):
    """A RUN_DIR that holds no finished run, or an unknown metric: exit code 2."""


@dataclass
class Run:
    """One trained model of one seed: its final row and every metrics row."""

    experiment: str
    model: str
    seed: int
    run_dir: str
    arg: str                  # the RUN_DIR argument it was found under
    final: dict
    rows: list


def _run_from(run_dir, arg: str, experiment: str, seed: int) -> Run:
    from fl_sim.results import MetricsLog

    rows = MetricsLog(run_dir / "metrics.jsonl").rows()
    finals = [r for r in rows if r.get("type") == "final"]
    if not finals:
        raise CompareError(f"{run_dir}: metrics.jsonl has no final row (the run has not finished)")
    final = finals[-1]
    return Run(experiment, final["model"], seed, str(run_dir), arg, final, rows)


def find_runs(path) -> list[Run]:
    """Every finished (model, seed) run under ``path``: a plain run, a comparison (one
    folder per model) or a multi-seed run (one ``seed-<s>`` folder per seed)."""
    from pathlib import Path

    from fl_sim.config import ConfigError, load_experiment

    path = Path(path)
    cfg_path = path / "config.resolved.toml"
    if not cfg_path.is_file():
        raise CompareError(f"{path}: not a run directory (no config.resolved.toml)")
    try:
        cfg = load_experiment(cfg_path)
    except ConfigError as exc:
        raise CompareError(str(exc)) from None
    e = cfg.experiment
    if e.seeds:
        return [r for s in e.seeds for r in _find_seed(path / f"seed-{s}", str(path), e.name, s, e.compare)]
    return _find_seed(path, str(path), e.name, e.seed, e.compare)


def _find_seed(path, arg: str, experiment: str, seed: int, compare) -> list[Run]:
    if not path.is_dir():
        raise CompareError(f"{path}: seed directory missing")
    dirs = [path / kind for kind in compare] if compare else [path]
    for d in dirs:
        if not (d / "metrics.jsonl").is_file():
            raise CompareError(f"{d}: no metrics.jsonl")
    return [_run_from(d, arg, experiment, seed) for d in dirs]


def resolve_metric(name: str) -> tuple[str, Metric]:
    """A metric by short name (``word_top1``) or final-row key (``eval_word_top1``)."""
    table = {**METRICS, **BASELINES}
    if name in table:
        return name, table[name]
    for short, m in table.items():
        if m.key == name:
            return short, m
    raise CompareError(f"--metric {name!r}: unknown metric; expected one of: {', '.join(table)}")


def group_runs(runs: list[Run], by: str = "model") -> dict[str, list[Run]]:
    """Runs grouped by model (and experiment, when they differ), or by RUN_DIR argument."""
    import os

    experiments = {r.experiment for r in runs}
    groups: dict[str, list[Run]] = {}
    for r in runs:
        if by == "run":
            key = f"{os.path.basename(r.arg.rstrip('/'))}/{r.model}"
        else:
            key = r.model if len(experiments) == 1 else f"{r.experiment}/{r.model}"
        groups.setdefault(key, []).append(r)
    return groups


def difference(a: list[Run], b: list[Run], metric: str, m: Metric,
               confidence: float = stats.CONFIDENCE) -> dict:
    """A - B: paired by seed when each group has distinct seeds and they share some, else
    Welch's unpaired interval (runs from different machines or seed lists)."""
    va = {r.seed: r.final.get(m.key) for r in a}
    vb = {r.seed: r.final.get(m.key) for r in b}
    common = sorted(s for s in va if s in vb and va[s] is not None and vb[s] is not None)
    distinct = len(va) == len(a) and len(vb) == len(b)
    if distinct and len(common) >= 2:
        d = stats.paired_difference([va[s] for s in common], [vb[s] for s in common],
                                    confidence=confidence, higher_is_better=m.higher_is_better)
        d.update(method="paired by seed", seeds=common)
    else:
        d = stats.welch_difference([r.final.get(m.key) for r in a], [r.final.get(m.key) for r in b],
                                   confidence=confidence, higher_is_better=m.higher_is_better)
        d.update(method="unpaired (Welch)")
    return d


def compare(paths: list, metrics: list[str], by: str = "model",
            confidence: float = stats.CONFIDENCE) -> tuple[dict, dict[str, list[Run]]]:
    """Everything ``fl-sim compare`` reports: per-run values, per-group mean ± CI, and the
    difference of every later group to every earlier one, for each metric; and the runs
    of each group (for the plot)."""
    resolved = [resolve_metric(n) for n in metrics]
    runs = [r for p in paths for r in find_runs(p)]
    groups = group_runs(runs, by)
    names = list(groups)
    out = {"confidence": confidence, "metrics": [n for n, _ in resolved], "groups": {}, "runs": [],
           "differences": []}
    for g, members in groups.items():
        out["groups"][g] = {"seeds": [r.seed for r in members], "run_dirs": [r.run_dir for r in members],
                            **{n: stats.t_interval([r.final.get(m.key) for r in members], confidence)
                               for n, m in resolved}}
        out["runs"] += [{"group": g, "experiment": r.experiment, "model": r.model, "seed": r.seed,
                         "run_dir": r.run_dir, **{n: r.final.get(m.key) for n, m in resolved}}
                        for r in members]
    for i, ga in enumerate(names):
        for gb in names[i + 1:]:
            for n, m in resolved:
                d = difference(groups[ga], groups[gb], n, m, confidence)
                d.update(a=ga, b=gb, metric=n,
                         text=f"{m.label}: " + stats.format_difference(label(ga), label(gb), d, m.fmt)
                              + f" [{d['method']}]")
                out["differences"].append(d)
    return out, groups


def compare_markdown(result: dict) -> str:
    pct = f"{100 * result['confidence']:g}%"
    lines = []
    for n in result["metrics"]:
        m = resolve_metric(n)[1]
        lines += [f"## {m.label} (`{m.key}`): mean ± {pct} t-interval half-width", "",
                  "| group | runs | seeds | mean ± CI | sd | values |", "|---|---|---|---|---|---|"]
        for g, s in result["groups"].items():
            st = s[n]
            sd = "-" if st["sd"] is None else format(st["sd"], m.fmt)
            vals = ", ".join(format(v, m.fmt) for v in st["values"])
            lines.append(f"| {label(g)} | {st['n']} | {', '.join(map(str, s['seeds']))} | "
                         f"{stats.format_mean(st, m.fmt)} | {sd} | {vals} |")
        lines.append("")
        lines += [f"- {d['text']}" for d in result["differences"] if d["metric"] == n]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def write_compare(result: dict, groups: dict[str, list[Run]], out_dir) -> list:
    """compare.md, compare.csv (one row per run), compare.json and compare.png in ``out_dir``."""
    import csv
    import io
    import json
    from pathlib import Path

    from fl_sim.plots import seed_bands
    from fl_sim.results import atomic_write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(result["runs"][0]))
    writer.writeheader()
    writer.writerows(result["runs"])
    atomic_write_text(out_dir / "compare.csv", buf.getvalue())
    atomic_write_text(out_dir / "compare.md", compare_markdown(result))
    atomic_write_text(out_dir / "compare.json", json.dumps(result, indent=2) + "\n")
    seed_bands({label(g): [r.rows for r in rs] for g, rs in groups.items()}, out_dir / "compare.png",
               title=" vs ".join(label(g) for g in groups))
    return [out_dir / n for n in ("compare.md", "compare.csv", "compare.json", "compare.png")]
