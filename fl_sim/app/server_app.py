"""The Flower ServerApp: rounds, sampling, aggregation, evaluation, checkpoints, results.

The round loop is written out here (rather than ``Strategy.start``) because a run must
checkpoint after every round, resume exactly, log one metrics row per round and evaluate
on held-out clients; the strategy object still does what a Flower strategy does
(configure_train / aggregate_train), and Flower's Grid carries every message.

A config with ``experiment.compare = [...]`` trains each model kind in turn, each in its
own sub-run directory, and writes a comparison table and plot in the parent run directory.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Callable

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp

from fl_sim import checkpoint, results
from fl_sim.app import stopping
from fl_sim.app.progress import LineProgress, as_progress
from fl_sim.config import OPTIMIZER_SLOTS, ExperimentConfig, dumps_toml, for_runtime, load_experiment
from fl_sim.tracking import Tracker, start_tracking

#: Where messages and per-round lines go: a LineProgress/LiveProgress, or any print-like callable.
Progress = LineProgress | Callable[[str], None]


def crash_point(name: str, server_round: int) -> None:
    """Fault injection for the crash tests: ``FL_SIM_CRASH_AT=<name>:<round>`` kills the
    server process here with SIGKILL (no cleanup, as a power cut would)."""
    if os.environ.get("FL_SIM_CRASH_AT") == f"{name}:{server_round}":
        os.kill(os.getpid(), signal.SIGKILL)


def wait_for_nodes(grid: Grid, minimum: int, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        nodes = list(grid.get_node_ids())
        if len(nodes) >= minimum:
            return nodes
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(nodes)} of {minimum} nodes connected after {timeout:.0f} s "
                               "(server.node_wait_timeout)")
        time.sleep(0.05)


class PartitionError(RuntimeError):
    """SuperNodes report missing or inconsistent partitions (their --node-config)."""


def discover_partitions(grid: Grid, node_ids: list[int], timeout: float) -> dict[int, tuple[int, int]]:
    """Ask each node which partition it owns: node id -> (partition-id, num-partitions).

    A node that does not answer within ``timeout`` seconds is left out (it gets no
    clients); a node that answers without a partition is an error.
    """
    if not node_ids:
        return {}
    messages = [Message(RecordDict({"partition": ConfigRecord({})}), message_type="query",
                        dst_node_id=node) for node in node_ids]
    out: dict[int, tuple[int, int]] = {}
    for reply in grid.send_and_receive(messages, timeout=timeout):
        node = reply.metadata.src_node_id
        if reply.has_error():
            logging.getLogger("flwr").warning("node %s did not report its partition: %s",
                                              node, reply.error.reason)
            continue
        info = reply.content["partition"]
        if "partition-id" not in info:
            raise PartitionError(
                f"SuperNode {node} has no partition: start it with --node-config "
                "'partition-id=I num-partitions=N' (or run without node-partitions)")
        pid, num = int(info["partition-id"]), int(info["num-partitions"])
        if not 0 <= pid < num:
            raise PartitionError(f"SuperNode {node}: partition-id {pid} not in [0, {num})")
        out[node] = (pid, num)
    nums = {num for _, num in out.values()}
    if len(nums) > 1:
        raise PartitionError(f"SuperNodes disagree on num-partitions: {sorted(nums)}")
    return out


def sub_runs(cfg: ExperimentConfig) -> list[tuple[str, ExperimentConfig]]:
    """(name, config) per model to train: one for a plain run, several for a comparison."""
    if not cfg.experiment.compare:
        return [("", cfg)]
    out = []
    for kind in cfg.experiment.compare:
        sub = cfg.replace(model=dataclasses.replace(cfg.model, kind=kind),
                          experiment=dataclasses.replace(cfg.experiment, compare=()))
        out.append((kind, sub))
    return out


def run_experiment(grid: Grid, cfg: ExperimentConfig, run_dir: Path, *, resume: bool = False,
                   min_nodes: int = 1, progress: Progress = print,
                   node_partitions: bool = False) -> dict:
    """Train every sub-run of ``cfg`` (every seed, every model) into ``run_dir``; return the summary."""
    from fl_sim.gpus import configure_gpus
    from fl_sim.malloc import tune_malloc

    configure_gpus()  # the server's evaluation shares a GPU with local workers
    tune_malloc()  # the server evaluates and aggregates every round
    run_dir = Path(run_dir)
    if not resume:
        results.write_run_files(run_dir, cfg)
    opts = {"min_nodes": min_nodes, "progress": progress, "node_partitions": node_partitions}
    if cfg.experiment.seeds:
        summary = run_seeds(grid, cfg, run_dir, **opts)
    else:
        summary = train_models(grid, cfg, run_dir, **opts)
        progress(summary_table(summary))
    progress(f"Run directory: {run_dir}")
    return summary


def train_models(grid: Grid, cfg: ExperimentConfig, run_dir: Path, *, min_nodes: int,
                 progress: Progress, node_partitions: bool, tag: str = "") -> dict:
    """One seed: every model of ``cfg`` into ``run_dir`` (or its per-model folders)."""
    summaries = {}
    for name, sub_cfg in sub_runs(cfg):
        sub_dir = run_dir / name if name else run_dir
        sub_dir.mkdir(exist_ok=True)
        if name and not (sub_dir / "config.resolved.toml").exists():
            results.write_run_files(sub_dir, sub_cfg, {"parent_run": str(run_dir)})
        summaries[name or sub_cfg.model.kind] = FederatedRun(
            grid, sub_cfg, sub_dir, progress=progress, label=(name or sub_cfg.model.kind) + tag,
            node_partitions=node_partitions,
        ).run(min_nodes=min_nodes)
    summary = write_summary(run_dir, cfg, summaries, one_of_seeds=bool(tag))
    statements = {name: f["privacy_statement"] for name, f in summaries.items()
                  if f.get("privacy_statement")}
    if statements:  # last: the listing names every file the run wrote
        from fl_sim.privacy.release import rules_for, write_statement

        write_statement(run_dir, statements, rules_for(cfg))
    return summary


def seed_config(cfg: ExperimentConfig, seed: int) -> ExperimentConfig:
    return cfg.replace(experiment=dataclasses.replace(cfg.experiment, seed=seed, seeds=()))


def run_seeds(grid: Grid, cfg: ExperimentConfig, run_dir: Path, *, progress: Progress, **opts) -> dict:
    """``experiment.seeds``: one complete run per seed in ``run_dir/seed-<s>/``, then the
    statistics over seeds. A seed whose summary.json exists is done (resume skips it)."""
    finals: dict[int, dict] = {}
    seeds = cfg.experiment.seeds
    for i, seed in enumerate(seeds, 1):
        seed_dir = run_dir / f"seed-{seed}"
        if (seed_dir / "summary.json").is_file():
            finals[seed] = json.loads((seed_dir / "summary.json").read_text())["models"]
            progress(f"[seed {seed}] finished earlier: {seed_dir}")
            continue
        seed_dir.mkdir(exist_ok=True)
        seed_cfg = seed_config(cfg, seed)
        if not (seed_dir / "config.resolved.toml").exists():
            results.write_run_files(seed_dir, seed_cfg, {"parent_run": str(run_dir)})
        progress(f"[seed {seed}] seed {i} of {len(seeds)} -> {seed_dir}")
        summary = train_models(grid, seed_cfg, seed_dir, progress=progress, tag=f" s{seed}", **opts)
        progress(summary_table(summary, one_of_seeds=True))
        finals[seed] = summary["models"]
    summary = write_seeds_summary(run_dir, cfg, finals)
    progress(seeds_summary_text(summary))
    return summary


class FederatedRun:
    """One model trained for ``cfg.experiment.rounds`` rounds into one run directory."""

    def __init__(self, grid: Grid, cfg: ExperimentConfig, run_dir: Path, *, progress: Progress,
                 label: str, node_partitions: bool = False):
        self.grid, self.cfg, self.run_dir, self.label = grid, cfg, run_dir, label
        self.progress = as_progress(progress)
        self.tracker = Tracker()   # start_tracking() replaces it once the run directory is set
        self.log = results.MetricsLog(run_dir / "metrics.jsonl")
        # Under DP, metrics.jsonl and TensorBoard hold only what the run releases; exact
        # per-round diagnostics go to diagnostics.jsonl, marked non-private (fl_sim/privacy/release.py).
        self.private = cfg.privacy.enabled
        self.diagnostics = results.MetricsLog(run_dir / "diagnostics.jsonl") if self.private else None
        # Deployment: each SuperNode owns a slice of the clients (its node config).
        self.node_partitions = node_partitions
        self.partitions: dict[int, tuple[int, int]] = {}
        self.failed_streak = 0  # consecutive rounds in which every sampled client failed

    def refresh_partitions(self, strategy) -> None:
        """Learn the partition of every node not seen before; pass the map to the strategy."""
        nodes = list(self.grid.get_node_ids())
        new = [n for n in nodes if n not in self.partitions]
        if new:
            self.partitions.update(discover_partitions(self.grid, new, self.cfg.server.node_wait_timeout))
        live = {n: self.partitions[n] for n in nodes if n in self.partitions}
        nums = {num for _, num in self.partitions.values()}
        if len(nums) > 1:
            raise PartitionError(f"SuperNodes disagree on num-partitions: {sorted(nums)}")
        if not nums:
            raise PartitionError("no SuperNode reported a partition within "
                                 f"{self.cfg.server.node_wait_timeout:.0f} s (server.node_wait_timeout)")
        strategy.set_partitions({n: pid for n, (pid, _) in live.items()}, nums.pop())

    def run(self, min_nodes: int) -> dict:
        """Set up, restore any checkpoint, play the rounds, write the final row."""
        t0 = time.perf_counter()
        self._setup()
        start = self._restore()
        self.progress.run_started(self.label, start, self.cfg.experiment.rounds)
        self.tracker = start_tracking(self.cfg, self.run_dir)
        nodes = wait_for_nodes(self.grid, min_nodes, self.cfg.server.node_wait_timeout)
        logging.getLogger("flwr").debug("nodes: %s", nodes)
        last_eval, stop_reason = None, None
        for rnd in range(start, self.cfg.experiment.rounds + 1):
            stopping.check()
            stop_reason = self.strategy.before_round(rnd)
            if stop_reason:
                self.progress(f"[{self.label}] stopping before round {rnd}: {stop_reason}")
                break
            row, stop_reason = self._play_round(rnd)
            if stop_reason:
                break
            crash_point("aggregated", rnd)
            ev = self._evaluate_if_due(rnd)
            if ev is not None:
                last_eval = ev
                row.update({f"eval_{k}": v for k, v in ev.items()})
            self._record(row)
        return self._finish(last_eval, stop_reason, t0)

    # -- the steps of run(), in order ----------------------------------------------------
    def _setup(self) -> None:
        """Data (the server's view: no training client's text), model, evaluator, baseline
        and the strategy stack for this config."""
        import tensorflow as tf

        from fl_sim.data.baselines import eval_baselines, flat_baselines
        from fl_sim.data.server_corpus import load_server_corpus
        from fl_sim.data.targets import word_mask
        from fl_sim.evaluation import Evaluator
        from fl_sim.models import build_model
        from fl_sim.partitioning import local_steps
        from strategies import make_strategy

        cfg = self.cfg
        self.corpus = corpus = load_server_corpus(cfg.data, cfg.experiment.seed)
        self.model = build_model(cfg.model, corpus.vocab.size, corpus.seq_len, seed=cfg.experiment.seed)
        self.evaluator = Evaluator(self.model, word_mask=word_mask(corpus.vocab),
                                   jit_compile=cfg.client.xla)
        self.eval_seqs = corpus.eval_sequences(cfg.server.eval_max_sequences)
        self.eval_owner = corpus.eval_row_clients(cfg.server.eval_max_sequences)  # clustered SE
        self.baseline = corpus.most_frequent_baseline(cfg.server.eval_max_sequences)
        self.baselines = flat_baselines(eval_baselines(self.eval_seqs, corpus.vocab))
        self.strategy = make_strategy(cfg.server.strategy, cfg, corpus.train_client_ids, dumps_toml(cfg))
        # Lets the strategy give every node an equal share of the round's SGD steps.
        self.strategy.set_client_cost(lambda cid: local_steps(cfg.client, corpus.num_train_sequences(cid)))
        self.weights = [v.numpy() for v in self.model.trainable_variables]
        # The seeded initial model, rebuilt identically on resume: the audit's reference.
        self.initial_weights = [w.copy() for w in self.weights] if cfg.audit.canaries else None
        self.n_params = int(sum(w.size for w in self.weights))
        self.writer = tf.summary.create_file_writer(str(self.run_dir / "tensorboard"))

    def _restore(self) -> int:
        """Load the latest checkpoint if any; return the first round to play."""
        self._release_pending()
        ckpt, notes = checkpoint.resume_point(self.run_dir, self.log.logged_rounds(),
                                              self.cfg.model.kind)
        for note in notes:  # a damaged newer checkpoint: say which one is used instead
            self.progress(f"[{self.label}] {note}")
        if ckpt is None:
            self.log.keep_rounds_upto(0)
            if self.diagnostics is not None:
                self.diagnostics.keep_rounds_upto(0)
            self._announce()
            return 1
        self.weights = ckpt["weights"]
        self.strategy.load_state(ckpt["optimizer_state"])
        self.strategy.load_extra_state(ckpt["extra"].get("strategy", {}))
        self.log.keep_rounds_upto(ckpt["round"])
        if self.diagnostics is not None:
            self.diagnostics.keep_rounds_upto(ckpt["round"])
        self.progress(f"[{self.label}] resuming after round {ckpt['round']} from {self.run_dir}")
        return ckpt["round"] + 1

    def _announce(self) -> None:
        cfg, corpus = self.cfg, self.corpus
        self.progress(
            f"[{self.label}] {corpus.describe().get('source', cfg.data.source)}: "
            f"{len(corpus.train_client_ids)} training clients, {len(corpus.eval_client_ids)} "
            f"held-out clients, vocab {corpus.vocab.size}; model {cfg.model.kind} "
            f"({self.n_params:,} parameters); {cfg.experiment.rounds} rounds x "
            f"{cfg.server.clients_per_round} clients")

    def _play_round(self, rnd: int) -> tuple[dict, str | None]:
        """Send the round to the nodes and aggregate: (metrics row, abort reason or None)."""
        cfg, strategy = self.cfg, self.strategy
        self.round_started = time.perf_counter()  # round_time_s includes its evaluation
        if self.node_partitions:
            self.refresh_partitions(strategy)
        messages = strategy.configure_train(rnd, ArrayRecord(self.weights), ConfigRecord(), self.grid)
        replies = stopping.send_and_receive(self.grid, messages, timeout=cfg.server.round_timeout)
        new_arrays, agg = strategy.aggregate_train(rnd, replies)
        row = {"type": "round", "round": rnd, "model": cfg.model.kind, **dict(agg)}
        if stop_reason := self._all_failed(rnd, row):
            row["abort_reason"] = stop_reason
            row["round_time_s"] = round(time.perf_counter() - self.round_started, 4)
            self._append(row)  # no checkpoint, nothing released: a resume retries this round
            self.progress(f"[{self.label}] {stop_reason}")
            return row, stop_reason
        if new_arrays is not None:
            self.weights = strategy.after_round(rnd, new_arrays.to_numpy_ndarrays())
        else:
            row["skip_reason"] = (f"{row['clients_completed']} clients completed, fewer than "
                                  f"server.min_clients = {cfg.server.min_clients}")
            if cfg.server.below_min_clients == "abort":
                stop_reason = (f"aborted in round {rnd}: {row['skip_reason']} "
                               "(server.below_min_clients = 'abort')")
                row["abort_reason"] = stop_reason
                row["round_time_s"] = round(time.perf_counter() - self.round_started, 4)
                self._append(row)  # no checkpoint: a resume retries this round
                self.progress(f"[{self.label}] {stop_reason}")
                return row, stop_reason
        row.update(strategy.round_metrics(rnd))
        return row, None

    def _all_failed(self, rnd: int, row: dict) -> str | None:
        """The abort reason once server.max_failed_rounds consecutive rounds had every sampled
        client fail. A broken setup (a worker that cannot read the experiment, a missing
        package) fails every client the same way; without this a run would go on and, under
        DP, release rounds of pure noise as if they had trained."""
        sampled, completed = row.get("clients_sampled", 0), row.get("clients_completed", 0)
        all_failed = sampled > 0 and completed == 0 and not row.get("clients_rejected", 0)
        self.failed_streak = self.failed_streak + 1 if all_failed else 0
        limit = self.cfg.server.max_failed_rounds
        if not limit or self.failed_streak < limit:
            return None
        inner = self.strategy
        while hasattr(inner, "inner"):
            inner = inner.inner
        why = getattr(inner, "last_failure", None)
        if why:  # the clients' error goes to the console only: it is not a released result
            self.progress(f"[{self.label}] round {rnd}: last failure: {why}")
        return (f"aborted in round {rnd}: every sampled client failed in {limit} consecutive "
                f"rounds (server.max_failed_rounds = {limit}); run with --verbose for the "
                "clients' errors")

    def _evaluate_if_due(self, rnd: int) -> dict | None:
        """Centralized evaluation on the held-out clients, every server.eval_every rounds and last."""
        cfg = self.cfg
        if rnd == cfg.experiment.rounds or (cfg.server.eval_every and rnd % cfg.server.eval_every == 0):
            return self._evaluate()
        return None

    def _evaluate(self) -> dict:
        for v, w in zip(self.model.trainable_variables, self.weights):
            v.assign(w)
        return self.evaluator.evaluate(self.eval_seqs, self.eval_owner)

    def _record(self, row: dict) -> None:
        """Checkpoint, then metrics.jsonl, TensorBoard and the progress line for one round."""
        rnd = row["round"]
        row["round_time_s"] = round(time.perf_counter() - self.round_started, 4)
        stopping.check()  # an interrupted round is repeated on resume, never recorded
        # Checkpoint (with the round's row and its privacy charge) BEFORE releasing the row:
        # a crash in between leaves a round that is charged and is released on resume
        # exactly as computed (_release_pending), never one that was released but would be
        # trained again with the same noise and other surviving clients.
        checkpoint.save(self.run_dir, rnd, self.weights, self.strategy.state(),
                        {"model": self.cfg.model.kind, "strategy": self.strategy.extra_state(),
                         "row": row})
        crash_point("checkpointed", rnd)
        self._release(row)
        rounds = self.cfg.experiment.rounds
        self.progress.round_done(self.label, row, rounds, self._progress_line(row, rounds))

    def _release(self, row: dict) -> None:
        """metrics.jsonl (+ diagnostics.jsonl under DP) and TensorBoard for one round row."""
        import tensorflow as tf

        released = self._append(row)
        with self.writer.as_default(step=row["round"]), np.errstate(over="ignore"):
            for k, v in released.items():
                if isinstance(v, (int, float)) and k not in ("round", "type"):
                    # TensorBoard stores float32: a diverged run's loss (1e26) or capped
                    # perplexity (1e304) is logged as inf instead of failing the run.
                    tf.summary.scalar(k, np.float32(v))
        self.writer.flush()

    def _release_pending(self) -> None:
        """Release the round a crash left checkpointed but not yet logged (see _record)."""
        try:
            ckpt = checkpoint.load_latest(self.run_dir)
            logged = self.log.logged_rounds()
        except (checkpoint.CheckpointError, ValueError):
            return  # resume_point reports what is wrong
        if ckpt is None or "row" not in ckpt["extra"] or ckpt["round"] in logged:
            return
        if set(range(1, ckpt["round"])) - logged:
            return  # an older gap: resume_point falls back and says so
        self.log.keep_rounds_upto(ckpt["round"] - 1)
        if self.diagnostics is not None:
            self.diagnostics.keep_rounds_upto(ckpt["round"] - 1)
        self._release(ckpt["extra"]["row"])
        self.progress(f"[{self.label}] round {ckpt['round']} was checkpointed but not yet "
                      "released when the run stopped: released now, as computed")

    def _finish(self, last_eval: dict | None, stop_reason: str | None, t0: float) -> dict:
        """The final row, privacy statement, final weights and learning curves."""
        from fl_sim.plots import learning_curves

        cfg, baseline = self.cfg, self.baseline
        if last_eval is None or stop_reason:  # resumed after the end, or stopped early
            last_eval = self._evaluate()
        final = {"type": "final", "model": cfg.model.kind, "rounds": cfg.experiment.rounds,
                 "parameters": self.n_params, "client_optimizer": cfg.client.optimizer,
                 # What each client's optimizer holds beside the model during its pass.
                 "client_optimizer_state_bytes": OPTIMIZER_SLOTS[cfg.client.optimizer] * self.n_params * 4,
                 "baseline_accuracy": baseline["accuracy"],
                 "baseline_accuracy_no_oov_eos": baseline["accuracy_no_oov_eos"],
                 "baseline_word": baseline.get("word"), **self.baselines,
                 **{f"eval_{k}": v for k, v in last_eval.items()},
                 **results.smoothed(self.log.rows(), cfg.experiment.smooth_evals),
                 "rounds_completed": max((int(r["round"]) for r in self.log.rows()
                                          if "abort_reason" not in r), default=0),
                 "stopped_reason": stop_reason,
                 **self.strategy.final_report(),
                 "wall_time_s": round(time.perf_counter() - t0, 2)}
        if self.initial_weights is not None:
            final.update(self._audit(final))
        stopping.check()
        final = self._append(final)
        if final.get("privacy_statement"):
            results.atomic_write_text(self.run_dir / "privacy_statement.md",
                                      "# Privacy statement\n\n" + final["privacy_statement"] + "\n")
        np.savez(self.run_dir / "final_weights.npz", *self.weights)
        learning_curves({cfg.model.kind: self.log.rows()}, self.run_dir / "plots" / "learning_curves.png",
                        title=f"{cfg.experiment.name}: {cfg.model.kind}", baselines=_baseline_lines(final))
        self.tracker.finish(final)
        return final

    def _audit(self, final: dict) -> dict:
        """[audit]: audit.json, and epsilon_emp into the final row and the statement."""
        from fl_sim.privacy.canaries import audit_run

        report, fields = audit_run(self.cfg, self.initial_weights, self.weights, final,
                                   population=len(self.corpus.train_client_ids))
        results.atomic_write_text(self.run_dir / "audit.json", json.dumps(report, indent=2) + "\n")
        acc = ", ".join(f"{v:.4g} ({k.upper()})" for k, v in report["accounted_epsilon"].items()
                        if v is not None)
        self.progress(f"[{self.label}] audit ({report['canaries']} canaries): epsilon_emp "
                      f"{emp_text(fields)} beside the accountant's epsilon {acc} at delta "
                      f"{report['delta']:.3g} (a diagnostic, not a guarantee: audit.json)")
        return fields

    def _append(self, row: dict) -> dict:
        """Log one row; under DP split into metrics.jsonl (released) and diagnostics.jsonl
        (not private). Returns what was released."""
        if self.diagnostics is None:
            released = row
        else:
            from fl_sim.privacy.release import split_row

            released, diag = split_row(row)
            self.diagnostics.append(diag)
        self.log.append(released)
        if released.get("type") == "round":  # tracking mirrors metrics.jsonl, never more
            self.tracker.log_round(released)
        return released

    def _progress_line(self, row: dict, rounds: int) -> str:
        parts = [f"[{self.label}] round {row['round']:>3}/{rounds}",
                 f"clients {row['clients_completed']}/{row['clients_sampled']}"]
        if row.get("clients_failed") or row.get("clients_rejected"):
            parts.append(f"failed {row['clients_failed']} rejected {row['clients_rejected']}")
        if row.get("skipped"):
            parts.append("SKIPPED")
        if "train_loss" in row:
            parts.append(f"train_loss {row['train_loss']:.3f}")
        if "eval_word_top1" in row:
            parts.append(f"eval word top-1 {row['eval_word_top1']:.4f} top-3 {row['eval_word_top3']:.4f} "
                         f"ppl {row['eval_perplexity']:.1f}")
        parts.append(f"{row['round_time_s']:.1f}s")
        return "  ".join(parts)


def _rows(run_dir: Path, seed: int, finals: dict[str, dict]) -> list[dict]:
    from fl_sim.comparison import row

    single = len(finals) == 1 and (run_dir / "metrics.jsonl").exists()
    return [row(f, model=name, seed=seed, run_dir=str(run_dir if single else run_dir / name))
            for name, f in finals.items()]


def _baseline_lines(final: dict) -> dict[str, float]:
    """The baselines drawn on the word top-1 panel."""
    return {k: final[f"baseline_{k}"] for k in ("constant_word_top1", "unigram_word_top1")
            if final.get(f"baseline_{k}") is not None}


def write_summary(run_dir: Path, cfg: ExperimentConfig, finals: dict[str, dict], *,
                  one_of_seeds: bool = False) -> dict:
    """summary.json / summary.md (and the combined plot of a comparison) for one seed."""
    from fl_sim.comparison import summarize_rows
    from fl_sim.plots import learning_curves

    rows = _rows(run_dir, cfg.experiment.seed, finals)
    summary = {"experiment": cfg.experiment.name, "seed": cfg.experiment.seed,
               "seeds": [cfg.experiment.seed], "run_dir": str(run_dir), "models": finals,
               "per_seed": rows, **summarize_rows(rows, list(finals))}
    results.atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    if len(finals) > 1:
        runs = {name: results.MetricsLog(run_dir / name / "metrics.jsonl").rows() for name in finals}
        learning_curves(runs, run_dir / "plots" / "learning_curves.png",
                        title=f"{cfg.experiment.name}: " + " vs ".join(finals),
                        baselines=_baseline_lines(next(iter(finals.values()))))
    text = summary_table(summary, one_of_seeds=one_of_seeds) + "\n"
    for name, f in finals.items():
        if f.get("privacy_statement"):
            text += f"\n## Privacy: {name}\n\n{f['privacy_statement']}\n"
        if f.get("stopped_reason"):
            text += f"\n{name} stopped early: {f['stopped_reason']}\n"
    results.atomic_write_text(run_dir / "summary.md", text)
    return summary


def write_seeds_summary(run_dir: Path, cfg: ExperimentConfig, finals: dict[int, dict[str, dict]]) -> dict:
    """summary.json / summary.md / plots over the seeds of ``experiment.seeds``.

    ``finals[seed][model]`` is that seed's final metrics row of that model.
    """
    from fl_sim.comparison import summarize_rows
    from fl_sim.plots import seed_bands

    models = list(next(iter(finals.values())))
    rows = [r for seed, fs in finals.items() for r in _rows(run_dir / f"seed-{seed}", seed, fs)]
    stopped = {m: [f"seed {seed}: {fs[m]['stopped_reason']}" for seed, fs in finals.items()
                   if fs[m].get("stopped_reason")] for m in models}
    summary = {"experiment": cfg.experiment.name, "seed": None, "seeds": list(finals),
               "run_dir": str(run_dir),
               "models": {m: {"stopped_reason": "; ".join(stopped[m]) or None,
                              "seed_dirs": [str(run_dir / f"seed-{s}") for s in finals]}
                          for m in models},
               "per_seed": rows, **summarize_rows(rows, models)}
    results.atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    curves = {m: [results.MetricsLog(Path(r["run_dir"]) / "metrics.jsonl").rows()
                  for r in rows if r["model"] == m] for m in models}
    first = finals[next(iter(finals))][models[0]]
    seed_bands(curves, run_dir / "plots" / "learning_curves.png", baselines=_baseline_lines(first),
               title=f"{cfg.experiment.name}: " + " vs ".join(models) + f" ({len(finals)} seeds)")
    text = seeds_summary_text(summary) + "\n"
    for m, reasons in stopped.items():
        text += "".join(f"\n{m} stopped early, {r}\n" for r in reasons)
    results.atomic_write_text(run_dir / "summary.md", text)
    return summary


def seeds_summary_text(summary: dict) -> str:
    from fl_sim.comparison import seeds_table, verdict_lines

    text = seeds_table(summary)
    verdicts = verdict_lines(summary)
    if verdicts:
        text += "\n\nVerdict (paired by seed, 95% t-interval):\n" + "\n".join(f"  {v}" for v in verdicts)
    return text


def emp_text(f: dict) -> str:
    """epsilon_emp and its bootstrap interval, e.g. '0.88 (0.74-1.22)'; '-' without an audit."""
    from fl_sim.privacy.empirical import EPSILON_CAP

    e = f.get("epsilon_emp")
    if e is None:
        return "-"
    lo, hi = f.get("epsilon_emp_ci_low"), f.get("epsilon_emp_ci_high")
    text = f">= {e:.3g} (cap)" if e >= EPSILON_CAP else f"{e:.3g}"
    return text + ("" if lo is None else f" ({lo:.3g}-{hi:.3g})")


def summary_table(summary: dict, *, one_of_seeds: bool = False) -> str:
    from fl_sim.comparison import baselines_text

    private = any("epsilon_rdp" in f for f in summary["models"].values())
    # Deployment-scale accounting: the headline epsilon is for the stated deployment; the
    # table says so in its header and shows the run's own (much larger) epsilon beside it.
    deploy = sorted({f["epsilon_for"] for f in summary["models"].values() if f.get("epsilon_for")})
    head = ("| model | rounds | params | word top-1 ± SE | word top-3 | word top-1, mean of last evals | "
            "acc. no OOV/EOS | accuracy | perplexity |")
    if private:
        scope = f" for {'; '.join(deploy)}" if deploy else ""
        head += f" z | epsilon (RDP){scope} | epsilon (PLD){scope} | delta | neighbouring relation |"
        if deploy:
            head += " epsilon of the simulated run itself (RDP) | its delta |"
    audited = any("epsilon_emp" in f for f in summary["models"].values())
    if audited:  # [audit]: a diagnostic from canary clients, beside the accountant's epsilon
        head += " epsilon_emp, canary audit (95% CI) |"
    lines = [head + " wall time |", "|---" * (head.count("|")) + "|"]

    def g(v, fmt=".4g"):
        return "-" if v is None else format(v, fmt)

    for name, f in summary["models"].items():
        done = f.get("rounds_completed", f["rounds"])
        rounds = f"{done}" if done == f["rounds"] else f"{done} of {f['rounds']}"
        se = f.get("eval_word_top1_se")
        line = (f"| {name} | {rounds} | {f['parameters']:,} | {g(f.get('eval_word_top1'), '.4f')}"
                f"{'' if se is None else f' ± {se:.4f}'} | {g(f.get('eval_word_top3'), '.4f')} | "
                f"{g(f.get('smoothed_word_top1'), '.4f')} | {f['eval_accuracy_no_oov_eos']:.4f} | "
                f"{f['eval_accuracy']:.4f} | {f['eval_perplexity']:.1f} |")
        if private:
            line += (f" {g(f.get('noise_multiplier'))} | {g(f.get('epsilon_rdp'))} | "
                     f"{g(f.get('epsilon_pld'))} | {g(f.get('delta'), '.2g')} | "
                     f"{f.get('neighboring_relation') or '-'} |")
            if deploy:
                line += f" {g(f.get('run_epsilon_rdp'))} | {g(f.get('run_delta'), '.2g')} |"
        if audited:
            line += f" {emp_text(f)} |"
        # Under DP the wall time is a diagnostic (it depends on the sampled clients' data).
        wall = f"{f['wall_time_s']:.0f} s" if "wall_time_s" in f else "in diagnostics.jsonl"
        lines.append(line + f" {wall} |")
    if summary.get("baselines"):
        lines += ["", baselines_text(summary["baselines"])]
    if len(summary["models"]) > 1 and not one_of_seeds:
        lines += ["", f"One seed ({summary['seed']}) ranks nothing: set experiment.seeds = [0, 1, 2] "
                      "for means, intervals and a paired verdict."]
    return "\n".join(lines)


# --- `flwr run .` entry point --------------------------------------------------------------

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the experiment named in the run config ([tool.flwr.app.config] in pyproject.toml)."""
    rc = context.run_config
    path = Path(str(rc.get("experiment", "experiments/demo.toml")))
    if not path.is_absolute() and not path.exists():
        path = Path(__file__).resolve().parents[2] / path
    overrides = [s for s in str(rc.get("overrides", "")).split(";") if s.strip()]
    if int(rc.get("num-server-rounds", 0) or 0):
        overrides.append(f"experiment.rounds={int(rc['num-server-rounds'])}")
    partitioned = bool(rc.get("node-partitions", False))
    resume = str(rc.get("resume", "") or "")
    if resume:  # continue a stopped run from its last checkpoint, with its own config
        run_dir = Path(resume)
        cfg = load_experiment(run_dir / "config.resolved.toml")
    else:
        # A deployment's run directory is meant to be handed out: DP noise from OS entropy
        # unless the experiment asks for reproducible noise (privacy.reproducible_noise).
        cfg = for_runtime(load_experiment(path, overrides), deployment=True)
        run_dir = results.new_run_dir(cfg, str(rc.get("output-dir", "")) or None)
    print(f"fl-sim: {'resuming' if resume else 'starting'} {cfg.experiment.name} -> {run_dir}",
          flush=True)
    run_experiment(grid, cfg, run_dir, resume=bool(resume), node_partitions=partitioned)


#: How often the simulation's ServerApp checks for replies (Flower's default is 0.1 s).
SIM_PULL_INTERVAL_S = 0.01


def make_server_app(cfg: ExperimentConfig, run_dir: Path, *, resume: bool, min_nodes: int,
                    progress: Progress = print) -> ServerApp:
    """A ServerApp bound to a config and run directory (used by ``fl-sim run``)."""
    server = ServerApp()

    @server.main()
    def _main(grid: Grid, context: Context) -> None:
        # The in-memory grid looks for replies every 0.1 s by default: on average 50 ms of
        # idle time added to every round, ~2 % of a 10-client demo round. A poll here is a
        # few dict lookups over this round's handful of messages, so poll every 10 ms.
        if hasattr(grid, "pull_interval"):
            grid.pull_interval = min(grid.pull_interval, SIM_PULL_INTERVAL_S)
        try:
            run_experiment(grid, for_runtime(cfg, deployment=False), run_dir, resume=resume,
                           min_nodes=min_nodes, progress=progress)
        except stopping.RunStopped:
            pass  # the main thread got SIGINT/SIGTERM and reports it (fl_sim.app.stopping)

    return server
