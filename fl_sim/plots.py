"""PNG learning curves (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def learning_curves(runs: dict[str, list[dict]], out: Path, title: str = "",
                    baseline: float | None = None) -> Path:
    """One line per run: eval accuracy, eval perplexity and train loss against round."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for name, rows in runs.items():
        rounds = [r for r in rows if r.get("type") == "round"]
        ev = [r for r in rounds if r.get("eval_accuracy") is not None]
        axes[0].plot([r["round"] for r in ev], [r["eval_accuracy"] for r in ev], marker=".", label=name)
        axes[1].plot([r["round"] for r in ev], [r["eval_perplexity"] for r in ev], marker=".", label=name)
        tr = [r for r in rounds if r.get("train_loss") is not None]
        axes[2].plot([r["round"] for r in tr], [r["train_loss"] for r in tr], label=name)
    if baseline is not None:
        axes[0].axhline(baseline, color="grey", linestyle="--", label="most-frequent word")
    axes[0].set(xlabel="round", ylabel="next-word accuracy (held-out clients)")
    axes[1].set(xlabel="round", ylabel="perplexity (held-out clients)", yscale="log")
    axes[2].set(xlabel="round", ylabel="client train loss")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
