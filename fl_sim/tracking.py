"""Optional experiment tracking: the run directory, mirrored to MLflow or W&B (``[tracking]``).

Off by default (``tracking.backend = "none"``). With ``backend = "mlflow"`` (the extra
``pip install 'fl-sim[mlflow]'``: mlflow-skinny, without pandas, pyarrow, scikit-learn or
Flask) every model run becomes one MLflow run that holds

- the resolved config, as params (``section.key``) and as the ``config.resolved.toml``
  artifact;
- every numeric field of every ``metrics.jsonl`` round row, as a metric at step = round;
- the final row's numeric fields as ``final/<field>``, and the run's files (metrics.jsonl,
  manifest.json, plots, final weights, privacy statement) as artifacts.

The store is local unless ``tracking.uri`` names a server: by default the SQLite file
``<experiment.output_dir>/mlflow.db`` (MLflow's own default store since 3.7; the plain
file store is legacy), with artifacts beside it in ``mlartifacts/``. Browse it with
``mlflow ui --backend-store-uri sqlite:///results/mlflow.db``. A resumed run continues its
MLflow run (the id is kept in ``tracking.json`` in the run directory); a round that was
logged but not checkpointed when the run stopped is logged again, with the same values,
since a resume replays it exactly.

With ``backend = "wandb"`` (the extra ``pip install 'fl-sim[wandb]'``) every model run
becomes one W&B run with the same content: the resolved config as the run config (nested
by section), the round rows with ``step`` = round, ``final/<field>`` in the run summary
and the run's files as one artifact of type ``fl-sim-run``. W&B runs offline unless
``tracking.uri`` names a W&B server (``https://api.wandb.ai`` or a self-hosted one; the
API key comes from W&B's own login). W&B's files go in the run directory, under
``wandb/`` (offline: ``wandb/offline-run-*``, uploaded later, if at all, with ``wandb
sync``). Offline also keeps W&B's own error reporting (Sentry) off unless
``WANDB_ERROR_REPORTING`` says otherwise. W&B ignores ``resume`` offline, so a resumed run
writes a second offline run directory with the same run id (online it continues the run;
W&B drops a replayed round's step it already has).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from fl_sim.config import ExperimentConfig, to_dict

#: Files of a run directory logged as artifacts at the end (checkpoints and TensorBoard
#: event files are left out: they are large and only the run directory needs them).
ARTIFACTS = ("config.resolved.toml", "manifest.json", "metrics.jsonl", "final_weights.npz",
             "privacy_statement.md", "plots")
STATE_FILE = "tracking.json"


class TrackingError(RuntimeError):
    """Tracking is configured but cannot work (the extra is not installed)."""


class Tracker:
    """No tracking (``tracking.backend = "none"``): every call does nothing."""

    def log_round(self, row: dict) -> None:
        pass

    def finish(self, final: dict) -> None:
        pass


def numeric(row: dict) -> dict[str, float]:
    """The row's numbers (bools and the bookkeeping keys left out)."""
    return {k: float(v) for k, v in row.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("round", "type")}


def flat_params(cfg: ExperimentConfig) -> dict[str, str]:
    return {f"{s}.{k}": str(v) for s, sec in to_dict(cfg).items() for k, v in sec.items()}


def default_uri(cfg: ExperimentConfig) -> str:
    return f"sqlite:///{(Path(cfg.experiment.output_dir).resolve() / 'mlflow.db').as_posix()}"


#: The package each backend imports, and what to install for it.
EXTRAS = {"mlflow": ("mlflow", "MLflow: pip install 'fl-sim[mlflow]' (mlflow-skinny)"),
          "wandb": ("wandb", "W&B: pip install 'fl-sim[wandb]'")}


def check_available(cfg: ExperimentConfig) -> None:
    """Raise TrackingError naming the extra when ``cfg.tracking`` needs a missing package."""
    if cfg.tracking.backend in EXTRAS:
        module, what = EXTRAS[cfg.tracking.backend]
        if module == "wandb" and not cfg.tracking.uri:
            # W&B reads this once, when it is first imported: an offline run sends nothing.
            os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
        try:
            __import__(module)
        except ImportError:
            raise TrackingError(f"tracking.backend = '{cfg.tracking.backend}' needs {what}") from None


class MlflowTracker(Tracker):
    """One MLflow run per model run directory, through ``MlflowClient`` (no global state)."""

    def __init__(self, cfg: ExperimentConfig, run_dir: Path) -> None:
        check_available(cfg)
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.run_dir = Path(run_dir)
        self.uri = cfg.tracking.uri or default_uri(cfg)
        self.client = MlflowClient(tracking_uri=self.uri)
        state_path = self.run_dir / STATE_FILE
        if state_path.is_file():  # a resume: continue the same MLflow run
            self.run_id = json.loads(state_path.read_text())["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            return
        name = cfg.tracking.project or cfg.experiment.name
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            exp_id = self.client.create_experiment(name, artifact_location=self._artifact_root(name))
        else:
            exp_id = exp.experiment_id
        run = self.client.create_run(exp_id, run_name=self.run_dir.name, tags={
            "fl_sim.run_dir": str(self.run_dir.resolve()), "fl_sim.model": cfg.model.kind,
            "fl_sim.seed": str(cfg.experiment.seed)})
        self.run_id = run.info.run_id
        params = [Param(k, v) for k, v in flat_params(cfg).items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=params[i:i + 100])
        config = self.run_dir / "config.resolved.toml"
        if config.is_file():
            self.client.log_artifact(self.run_id, str(config))
        state_path.write_text(json.dumps({"backend": "mlflow", "uri": self.uri,
                                          "run_id": self.run_id}, indent=2) + "\n")

    def _artifact_root(self, name: str) -> str | None:
        # A SQLite store would otherwise put artifacts in ./mlruns under whatever directory
        # the run happened to start from; keep them next to the database instead.
        if self.uri.startswith("sqlite:///"):
            return (Path(self.uri[len("sqlite:///"):]).resolve().parent / "mlartifacts" / name).as_uri()
        return None

    def _log(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        metrics = [Metric(k, v, stamp, step) for k, v in values.items()]
        for i in range(0, len(metrics), 1000):  # MLflow's batch limit
            self.client.log_batch(self.run_id, metrics=metrics[i:i + 1000])

    def log_round(self, row: dict) -> None:
        self._log(numeric(row), int(row["round"]))

    def finish(self, final: dict) -> None:
        step = int(final.get("rounds_completed") or 0)
        self._log({f"final/{k}": v for k, v in numeric(final).items()}, step)
        for name in ARTIFACTS:
            path = self.run_dir / name
            if path.is_dir():
                self.client.log_artifacts(self.run_id, str(path), artifact_path=name)
            elif path.is_file():
                self.client.log_artifact(self.run_id, str(path))
        if final.get("stopped_reason"):  # a budget stop or an abort: the run still ended
            self.client.set_tag(self.run_id, "fl_sim.stopped_reason", str(final["stopped_reason"]))
        self.client.set_terminated(self.run_id, status="FINISHED")


def artifact_name(cfg: ExperimentConfig, run_dir: Path) -> str:
    """The run directory from its experiment's folder down (``<out>/<experiment>/<run_id>
    [/seed-k/<model>]``; ``--out`` may put it anywhere), in the characters W&B allows."""
    parts = Path(run_dir).resolve().parts
    top = max((i for i, p in enumerate(parts) if p == cfg.experiment.name), default=len(parts) - 1)
    return re.sub(r"[^\w.-]+", "-", "/".join(parts[top:]))


class WandbTracker(Tracker):
    """One W&B run per model run directory, through its ``Run`` object (not ``wandb.run``)."""

    def __init__(self, cfg: ExperimentConfig, run_dir: Path) -> None:
        check_available(cfg)
        import wandb

        self.cfg, self.run_dir = cfg, Path(run_dir)
        state_path = self.run_dir / STATE_FILE
        run_id = json.loads(state_path.read_text())["run_id"] if state_path.is_file() else None
        online = bool(cfg.tracking.uri)
        settings = wandb.Settings(
            # fl-sim's own progress display owns the console; W&B would wrap stdout.
            console="off", silent=True, disable_git=True, save_code=False,
            **({"base_url": cfg.tracking.uri} if online else {}))
        self.run = wandb.init(
            project=cfg.tracking.project or cfg.experiment.name, name=self.run_dir.name,
            id=run_id, resume="allow" if run_id else None, dir=str(self.run_dir.resolve()),
            mode="online" if online else "offline", config=to_dict(cfg),
            tags=[f"model:{cfg.model.kind}", f"seed:{cfg.experiment.seed}"],
            # Several model runs may share this process (a sweep): none ends another.
            reinit="create_new", settings=settings)
        state_path.write_text(json.dumps({
            "backend": "wandb", "uri": cfg.tracking.uri, "run_id": self.run.id,
            "run_dir": str(Path(self.run.dir).parent)}, indent=2) + "\n")

    def log_round(self, row: dict) -> None:
        self.run.log(numeric(row), step=int(row["round"]))

    def finish(self, final: dict) -> None:
        import wandb

        self.run.summary.update({f"final/{k}": v for k, v in numeric(final).items()})
        if final.get("stopped_reason"):
            self.run.summary["stopped_reason"] = str(final["stopped_reason"])
        artifact = wandb.Artifact(artifact_name(self.cfg, self.run_dir), type="fl-sim-run")
        for name in ARTIFACTS:
            path = self.run_dir / name
            if path.is_dir():
                artifact.add_dir(str(path), name=name)
            elif path.is_file():
                artifact.add_file(str(path), name=name)
        self.run.log_artifact(artifact)
        self.run.finish()


def start_tracking(cfg: ExperimentConfig, run_dir: Path) -> Tracker:
    """The tracker ``cfg.tracking`` asks for, for the model run in ``run_dir``."""
    if cfg.tracking.backend == "mlflow":
        return MlflowTracker(cfg, run_dir)
    if cfg.tracking.backend == "wandb":
        return WandbTracker(cfg, run_dir)
    return Tracker()
