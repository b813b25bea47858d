"""PNG learning curves (matplotlib, no display needed).

The first panel is the headline metric, next-word top-1 over word targets (solid; top-3
dashed), with the baselines of the same evaluation set as grey lines. Over several seeds
(:func:`seed_bands`) every curve is the mean over seeds with its 95% t-interval as a band.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from fl_sim.stats import band  # noqa: E402

BASELINE_LABELS = {"constant_word_top1": "best constant word (top-1)",
                   "unigram_word_top1": "unigram (top-1)"}
_PANELS = (("eval_word_top1", "word top-1 accuracy (held-out clients)"),
           ("eval_perplexity", "perplexity (held-out clients)"),
           ("train_loss", "client train loss"))


def _eval_rows(rows: list[dict], key: str) -> list[dict]:
    return [r for r in rows if r.get("type") == "round" and r.get(key) is not None]


def _finish(fig, axes, out: Path, title: str, baselines: dict[str, float] | None) -> Path:
    styles = iter((":", "-."))
    for name, value in (baselines or {}).items():
        axes[0].axhline(value, color="grey", linestyle=next(styles, ":"),
                        label=BASELINE_LABELS.get(name, name))
    for ax, (_, ylabel) in zip(axes, _PANELS):
        ax.set(xlabel="round", ylabel=ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[1].set_yscale("log")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def learning_curves(runs: dict[str, list[dict]], out: Path, title: str = "",
                    baselines: dict[str, float] | None = None) -> Path:
    """One line per run: word top-1 (top-3 dashed), perplexity and train loss against round."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for name, rows in runs.items():
        line = None
        for ax, (key, _) in zip(axes, _PANELS):
            ev = _eval_rows(rows, key)
            (line,) = ax.plot([r["round"] for r in ev], [r[key] for r in ev],
                              marker="." if key != "train_loss" else None, label=name,
                              color=None if line is None else line.get_color())
        ev = _eval_rows(rows, "eval_word_top3")
        axes[0].plot([r["round"] for r in ev], [r["eval_word_top3"] for r in ev], linestyle="--",
                     color=line.get_color(), label=f"{name} (top-3)")
    return _finish(fig, axes, out, title, baselines)


def _aligned(runs: list[list[dict]], key: str) -> tuple[list[int], np.ndarray]:
    """Rounds every run has a value of ``key`` at, and the [runs, rounds] values there."""
    per_run = [{int(r["round"]): float(r[key]) for r in _eval_rows(rows, key)} for rows in runs]
    rounds = sorted(set.intersection(*(set(p) for p in per_run))) if per_run else []
    return rounds, np.array([[p[x] for x in rounds] for p in per_run])


def seed_bands(groups: dict[str, list[list[dict]]], out: Path, title: str = "",
               baselines: dict[str, float] | None = None) -> Path:
    """Per group (model), the mean curve over its runs (seeds) and a 95% CI band.

    Only rounds every run of a group has are drawn (a run that stopped early shortens
    its group's curve rather than skewing the mean).
    """
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for name, runs in groups.items():
        color = None
        keys = [(axes[0], "eval_word_top3", "--")] + [(ax, key, "-") for ax, (key, _) in zip(axes, _PANELS)]
        for ax, key, style in sorted(keys, key=lambda k: k[2] == "--"):
            rounds, y = _aligned(runs, key)
            if not rounds:
                continue
            mean, lo, hi = band(y)
            suffix = " (top-3)" if key == "eval_word_top3" else f" (mean of {len(runs)}, 95% CI)"
            (line,) = ax.plot(rounds, mean, linestyle=style, color=color, label=name + suffix)
            color = line.get_color()
            if style == "-":  # top-3 is drawn as its mean only, to keep the panel readable
                ax.fill_between(rounds, lo, hi, color=color, alpha=0.2)
    return _finish(fig, axes, out, title, baselines)
