"""What a run or sweep shows while it works: a live display on a terminal, lines in logs.

On a terminal (``fl-sim run`` / ``fl-sim sweep`` in a shell) a rich live display keeps one
bar per model being trained (round k/N, ETA, the last evaluation's headline metric and,
under DP, epsilon so far) and one for a sweep's points, with messages printed above it.
When stdout is not a terminal (CI, a log file, nohup, a pipe) the output is one line per
message and per round, exactly as before: a log should not fill with redraws.

The server loop talks to a :class:`LineProgress` (``as_progress`` wraps any plain
``print``-like callable in one), so code that passes ``progress=print`` keeps working.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TextIO

#: Row keys tried in order for the bar's headline metric (the first one present is shown).
HEADLINE = (("eval_word_top1", "word top-1"), ("eval_accuracy", "acc"))


class LineProgress:
    """One line per message and per round (logs, CI, nohup): the plain output."""

    def __init__(self, write: Callable[[str], None] = print) -> None:
        self.write = write

    def __call__(self, text: str) -> None:
        self.write(text)

    def run_started(self, label: str, first_round: int, rounds: int) -> None:
        """A model's training starts (or resumes) at ``first_round`` of ``rounds``."""

    def round_done(self, label: str, row: dict, rounds: int, line: str) -> None:
        """A round's metrics row was written; ``line`` is its one-line summary."""
        self.write(line)

    def sweep_point(self, index: int, total: int, text: str) -> None:
        """Point ``index`` (1-based) of ``total`` of a sweep starts, or is skipped as done."""
        self.write(text)

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc) -> None:
        pass


def eval_text(row: dict) -> str | None:
    """The row's headline evaluation metric, if the round evaluated."""
    for key, name in HEADLINE:
        if key in row:
            return f"{name} {row[key]:.4f}"
    return None


def epsilon_text(row: dict) -> str | None:
    """Epsilon so far under DP (the configured accountant's), if the row has one."""
    accountant = row.get("accountant")
    eps = row.get(f"epsilon_{accountant}") if accountant else None
    eps = row.get("epsilon_rdp") if eps is None else eps
    if eps is None:
        return None
    return f"ε {eps:.3g}" + (f" ({accountant})" if accountant else "")


class LiveProgress(LineProgress):
    """A rich live display: a bar per model run and one for a sweep's points."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        self.console = Console(file=stream, highlight=False)
        super().__init__(lambda text: self.console.print(text, markup=False, highlight=False))
        self.bars = Progress(
            TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
            TextColumn("elapsed"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            TextColumn("{task.fields[summary]}", markup=False),
            console=self.console, transient=False, redirect_stdout=True, redirect_stderr=True)
        self.tasks: dict[str, int] = {}   # label (or "sweep") -> rich task id
        self.last_eval: dict[str, str | None] = {}
        self.sweep_total = 0

    def run_started(self, label: str, first_round: int, rounds: int) -> None:
        if label in self.tasks:  # the same model again (the next sweep point): a fresh bar
            self.bars.remove_task(self.tasks.pop(label))
        self.last_eval[label] = None
        self.tasks[label] = self.bars.add_task(f"[{label}] round", total=rounds,
                                               completed=first_round - 1, summary="")

    def round_done(self, label: str, row: dict, rounds: int, line: str) -> None:
        if label not in self.tasks:
            self.run_started(label, int(row["round"]), rounds)
        # The last evaluation stays on the bar through the rounds that do not evaluate.
        self.last_eval[label] = eval_text(row) or self.last_eval[label]
        summary = "  ".join(t for t in (self.last_eval[label], epsilon_text(row)) if t)
        self.bars.update(self.tasks[label], completed=int(row["round"]), summary=summary)

    def sweep_point(self, index: int, total: int, text: str) -> None:
        self(text)
        if "sweep" not in self.tasks:
            self.tasks["sweep"] = self.bars.add_task("[sweep] point", total=total, summary="")
            self.sweep_total = total
        self.bars.update(self.tasks["sweep"], completed=index - 1, summary=text.split(": ", 1)[0])

    def __enter__(self) -> LiveProgress:
        self.bars.start()
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None and "sweep" in self.tasks:
            self.bars.update(self.tasks["sweep"], completed=self.sweep_total, summary="done")
        self.bars.stop()


def is_live_terminal(stream: TextIO) -> bool:
    """A terminal a live display can redraw: a TTY whose TERM is not 'dumb'."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        return False
    return tty and os.environ.get("TERM", "") not in ("dumb", "unknown")


def for_stream(stream: TextIO | None = None) -> LineProgress:
    """A live display if ``stream`` (default: stdout) is a terminal, else plain lines."""
    stream = sys.stdout if stream is None else stream
    if is_live_terminal(stream):
        return LiveProgress(stream)

    def write(text: str) -> None:
        print(text, file=stream, flush=True)

    return LineProgress(write)


def as_progress(progress: LineProgress | Callable[[str], None]) -> LineProgress:
    """``progress`` itself if it is one, else a LineProgress writing through it."""
    return progress if isinstance(progress, LineProgress) else LineProgress(progress)
