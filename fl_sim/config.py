"""Experiment configuration: TOML files read into frozen, validated dataclasses.

Every field carries its own constraint (type, range or choices) in its metadata, so one
validator checks files and ``--set section.key=value`` overrides alike, and every error
names the file, the key, the value and what was expected.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import tomli_w


class ConfigError(ValueError):
    """A config file or override is invalid. The CLI maps it to exit code 2."""


def _f(default: Any, *, lo: float | None = None, hi: float | None = None,
       lo_open: bool = False, choices: tuple | None = None, doc: str = "",
       factory: Any = None, dir_name: bool = False, bool_ok: bool = False) -> Any:
    # dir_name: the value becomes one directory name under the output root (check_dir_name).
    # bool_ok: a string setting that also takes TOML true/false (read as "true"/"false").
    meta = {"lo": lo, "hi": hi, "lo_open": lo_open, "choices": choices, "doc": doc,
            "dir_name": dir_name, "bool_ok": bool_ok}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


MODEL_KINDS = ("cifg", "si_cifg", "transformer", "si_transformer")
DATA_SOURCES = ("shakespeare", "jsonl", "folder", "stackoverflow_sqlite", "synthetic",
                "synthetic_lazy")


@dataclass(frozen=True)
class ExperimentSection:
    name: str = _f("experiment", dir_name=True, doc="results go to <output_dir>/<name>/<run_id>/")
    seed: int = _f(0, lo=0, doc="fixes client sampling, data split and order, init and noise")
    seeds: tuple[int, ...] = _f(None, factory=tuple, lo=0,
                                doc="train once per seed (instead of seed): mean, CI and paired "
                                    "differences over seeds")
    rounds: int = _f(10, lo=1, doc="federated rounds")
    output_dir: str = _f("results", doc="root folder for run directories")
    compare: tuple[str, ...] = _f(None, factory=tuple, choices=MODEL_KINDS, dir_name=True,
                                  doc="train these model kinds side by side (one sub-run each)")
    smooth_evals: int = _f(3, lo=1, doc="the smoothed figure: mean of the last k evaluations")

    @property
    def run_seeds(self) -> tuple[int, ...]:
        """The seeds this experiment trains with: ``seeds``, or just ``seed``."""
        return self.seeds or (self.seed,)


@dataclass(frozen=True)
class DataConfig:
    source: str = _f("shakespeare", choices=DATA_SOURCES)
    path: str = _f("", doc="file or folder for jsonl / folder / stackoverflow_sqlite")
    vocab_size: int = _f(10000, lo=10, doc="most frequent words (specials excluded) of vocab_source")
    vocab_source: str = _f("auto", choices=("auto", "train", "public"),
                           doc="whose word counts pick the vocabulary: 'train' (the training clients' "
                               "raw counts), 'public' (the held-out clients, designated public), "
                               "'auto' = 'public' when privacy.enabled, else 'train'")
    seq_len: int = _f(20, lo=2, hi=512, doc="tokens per training sequence")
    eval_clients: int = _f(32, lo=1, doc="held-out clients for centralized evaluation")
    min_client_sequences: int = _f(2, lo=1, doc="drop clients with fewer sequences")
    max_clients: int = _f(0, lo=0, doc="cap on training clients (0 = all)")
    max_sequences_per_client: int = _f(0, lo=0, doc="cap per client (0 = all); TFF uses 256 for SO")
    cache_dir: str = _f(".cache/fl_sim", doc="tokenized corpus cache")
    # synthetic and synthetic_lazy (a generated population, see fl_sim/data/population.py) only
    synthetic_clients: int = _f(64, lo=2, doc="synthetic: number of clients")
    synthetic_sentences: int = _f(20, lo=1, doc="synthetic: sentences per client")


@dataclass(frozen=True)
class ModelConfig:
    kind: str = _f("si_cifg", choices=MODEL_KINDS)
    embedding_dim: int = _f(96, lo=1)
    hidden_dim: int = _f(256, lo=1, doc="CIFG units, or transformer model width")
    projection_dim: int = _f(96, lo=0, doc="CIFG output projection (0 = none)")
    num_layers: int = _f(2, lo=1, doc="transformer blocks")
    num_heads: int = _f(4, lo=1, doc="transformer attention heads")
    ff_dim: int = _f(512, lo=1, doc="transformer feed-forward width")


CLIENT_OPTIMIZERS = ("sgd", "adam", "adagrad")
# The client lr when the config sets none (not tuned here; experiments/sweeps/
# client_optimizer.toml compares grids). SGD: the demo's value. Adam: Keras's default; its
# step is about lr per weight whatever the gradient's scale, so SGD's 0.5 would move every
# weight by 0.5 a step, more than the initial weights' scale (~0.1). Adagrad: its
# accumulator starts at 0.1 and client state starts fresh each round, so over a round's few
# small gradients it steps like SGD with lr / sqrt(0.1) = 3.2 lr: 0.05 is SGD-sized (0.16).
CLIENT_LR_DEFAULTS = {"sgd": 0.5, "adam": 1e-3, "adagrad": 0.05}
ADAPTIVE_LR_MAX = 0.1  # adam / adagrad: a larger client.lr is rejected (see above)
# Per-parameter float32 slots of each client optimizer's state (Adam: m and v).
OPTIMIZER_SLOTS = {"sgd": 0, "adam": 2, "adagrad": 1}


@dataclass(frozen=True)
class ClientConfig:
    optimizer: str = _f("sgd", choices=CLIENT_OPTIMIZERS,
                        doc="client optimizer; adam / adagrad state starts fresh for every client")
    lr: float = _f(None, lo=0.0, lo_open=True,
                   doc="client learning rate (unset: sgd 0.5, adam 0.001, adagrad 0.05)")
    local_epochs: int = _f(1, lo=1)
    batch_size: int = _f(16, lo=1)
    max_steps: int = _f(0, lo=0, doc="cap on local SGD steps per round (0 = no cap)")
    xla: bool = _f(False, doc="compile the local step and evaluation with XLA (clients/trainer.py)")

    def __post_init__(self):
        if self.lr is None:  # not in the file: the optimizer's own default
            object.__setattr__(self, "lr", CLIENT_LR_DEFAULTS[self.optimizer])


@dataclass(frozen=True)
class ServerConfig:
    strategy: str = _f("fedavg", choices=("fedavg",), doc="server strategy (strategies/registry.py)")
    optimizer: str = _f("sgd", choices=("sgd", "adam"), doc="server optimizer (adam = FedAdam)")
    lr: float = _f(1.0, lo=0.0, lo_open=True)
    momentum: float = _f(0.0, lo=0.0, hi=0.999)
    beta1: float = _f(0.9, lo=0.0, hi=0.999)
    beta2: float = _f(0.99, lo=0.0, hi=0.9999)
    epsilon: float = _f(1e-3, lo=0.0, lo_open=True, doc="FedAdam tau")
    weighted: bool = _f(True, doc="weight client deltas by example count")
    clients_per_round: int = _f(10, lo=1)
    min_clients: int = _f(1, lo=1, doc="fewest completed clients for a round to count")
    eval_every: int = _f(1, lo=0, doc="centralized evaluation every k rounds (0 = only at end)")
    eval_max_sequences: int = _f(2000, lo=0, doc="cap on evaluation sequences (0 = all)")
    round_timeout: float = _f(600.0, lo=0.0, lo_open=True, doc="seconds to wait for replies")
    node_wait_timeout: float = _f(120.0, lo=0.0, lo_open=True, doc="seconds to wait for nodes")
    below_min_clients: str = _f("skip", choices=("skip", "abort"),
                                doc="a round with fewer than min_clients completed: skip it, or abort the run")
    max_update_bytes: int = _f(0, lo=0, doc="reject a client update larger than this (0 = no limit)")
    max_failed_rounds: int = _f(3, lo=0, doc="abort after this many consecutive rounds in which every "
                                "sampled client failed (0 = never)")


@dataclass(frozen=True)
class SimulationConfig:
    backend: str = _f("ray", choices=("ray",), doc="Flower simulation backend")
    num_workers: int = _f(1, lo=1, doc="concurrent ClientApp worker processes (Ray actors)")
    num_supernodes: int = _f(0, lo=0, doc="simulated nodes (0 = 2 per worker, at most clients_per_round); any node trains any client")
    client_failure_rate: float = _f(0.0, lo=0.0, hi=1.0,
                                    doc="fault injection: each sampled client crashes mid-round "
                                        "with this probability, drawn from (seed, round, client)")
    ray_address: str = _f("", doc="'' = start a local Ray with num_workers CPUs; 'auto' or "
                                   "host:port = run on that existing Ray cluster (docs/deployment.md)")
    cpus_per_worker: float = _f(1.0, lo=0.0, lo_open=True,
                                doc="Ray CPUs each worker reserves on an existing cluster: a node with "
                                    "C CPUs runs floor(C / cpus_per_worker) workers (a local Ray "
                                    "always runs num_workers)")
    gpus_per_worker: float = _f(0.0, lo=0.0, doc="Ray GPUs each worker reserves; a fraction shares a "
                                                 "GPU (0.25 = four workers per GPU)")


@dataclass(frozen=True)
class DeploymentConfig:
    """How a SuperNode's ClientApp trains in a Flower deployment (clients/trainer_link.py)."""

    warm_trainer: bool = _f(True, doc="hand each message's training to a warm per-node trainer "
                                      "process instead of importing TF and building the model in "
                                      "every per-message flwr-clientapp process")
    trainer_idle_timeout: float = _f(600.0, lo=0.0, lo_open=True,
                                     doc="seconds a warm trainer waits for work before it exits")
    node_sums: bool = _f(False, doc="each node validates its clients' updates as the server would "
                                    "and returns their weighted sum and every client's metrics, "
                                    "not every update (one update per node and round on the wire; "
                                    "under DP the node clips each update to the round's clip norm, "
                                    "sent by the server, and sums them unweighted; the server adds "
                                    "the noise)")


@dataclass(frozen=True)
class PrivacyConfig:
    """User-level DP-FedAvg (McMahan et al. 2018; Andrew et al. 2021) or DP-FTRL with tree
    aggregation (Kairouz et al. 2021)."""

    enabled: bool = _f(False)
    mechanism: str = _f("dp_fedavg", choices=("dp_fedavg", "dp_ftrl"),
                        doc="dp_fedavg: Gaussian noise on each round's sum; dp_ftrl: tree-aggregation "
                            "noise on the prefix sums and an FTRL server step (strategies/dp_ftrl.py)")
    tree_restart_rounds: int = _f(0, lo=0, doc="dp_ftrl: a new tree every R rounds; every client takes "
                                               "part at most once per tree (0 = floor(population / "
                                               "clients_per_round): one pass over the clients per tree)")
    noise_multiplier: float = _f(1.0, lo=0.0, doc="z: noise std = z * clip_norm on the sum")
    clip_norm: float = _f(0.1, lo=0.0, lo_open=True, doc="C (the initial C when adaptive)")
    adaptive_clipping: bool = _f(False, doc="geometric clip update toward target_quantile")
    target_quantile: float = _f(0.5, lo=0.0, hi=1.0)
    clip_lr: float = _f(0.2, lo=0.0, lo_open=True, doc="adaptive clipping learning rate")
    clipped_count_stddev: float = _f(0.0, lo=0.0, doc="0 = expected cohort / 20 (Andrew et al.)")
    sampling: str = _f("fixed", choices=("fixed", "poisson"),
                       doc="fixed-size without replacement, or Poisson with q = cohort / population")
    delta: float = _f(0.0, lo=0.0, hi=1.0, lo_open=False, doc="0 = 1 / population^1.1")
    target_epsilon: float = _f(0.0, lo=0.0, doc="> 0: calibrate noise_multiplier to reach it at the last round")
    max_epsilon: float = _f(0.0, lo=0.0, doc="> 0: stop before the round that would exceed it")
    accountant: str = _f("rdp", choices=("rdp", "pld"), doc="accountant used for budget and calibration")
    # Deployment-scale accounting (pfl-research's noise_cohort_size): train a cohort of m
    # clients, add the noise a cohort of m' would get, and account epsilon for a stated
    # deployment of N' clients sampling m' per round (fl_sim/privacy/deployment.py).
    noise_cohort_size: int = _f(0, lo=0, doc="m': noise std z*C/m' on the mean, as for a cohort of m' "
                                              "(0 = server.clients_per_round, i.e. off)")
    accounting_population: int = _f(0, lo=0, doc="N': epsilon is accounted for a deployment of N' clients "
                                                  "sampling noise_cohort_size per round (0 = the training population)")
    reproducible_noise: str = _f("auto", choices=("auto", "true", "false"), bool_ok=True,
                                 doc="true: DP noise and cohorts from (seed, purpose, round), so anyone "
                                     "with the seed can subtract the noise; false: OS entropy, never "
                                     "written; auto: true in fl-sim run/sweep, false under flwr run "
                                     "(local cluster, docker-compose)")


@dataclass(frozen=True)
class PruningConfig:
    """Federated magnitude pruning of the global model (Zhu & Gupta 2017 schedule)."""

    enabled: bool = _f(False)
    target_sparsity: float = _f(0.8, lo=0.0, hi=0.99)
    begin_round: int = _f(1, lo=1)
    end_round: int = _f(0, lo=0, doc="0 = three quarters of experiment.rounds")
    frequency: int = _f(1, lo=1, doc="re-prune every k rounds within [begin_round, end_round]")
    power: float = _f(3.0, lo=1.0, doc="polynomial schedule exponent")


@dataclass(frozen=True)
class AuditConfig:
    """One-shot empirical privacy audit (Andrew et al. 2024; fl_sim/privacy/canaries.py)."""

    canaries: int = _f(0, lo=0, doc="k > 0: insert k canary clients into the DP clipped sum and "
                                    "report epsilon_emp beside epsilon in audit.json (0 = off)")


@dataclass(frozen=True)
class TrackingConfig:
    """Optional experiment tracking (fl_sim/tracking.py); the run directory is always written."""

    backend: str = _f("none", choices=("none", "mlflow", "wandb"),
                      doc="needs its extra: pip install 'fl-sim[mlflow]' or 'fl-sim[wandb]'")
    uri: str = _f("", doc="MLflow tracking URI ('' = sqlite file mlflow.db in experiment.output_dir); "
                      "W&B server URL ('' = offline, in the run directory's wandb/)")
    project: str = _f("", doc="MLflow experiment / W&B project name ('' = experiment.name)")


@dataclass(frozen=True)
class ExperimentConfig:
    experiment: ExperimentSection = field(default_factory=ExperimentSection)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    client: ClientConfig = field(default_factory=ClientConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    simulation: SimulationConfig = field(default_factory=SimulationConfig)
    deployment: DeploymentConfig = field(default_factory=DeploymentConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    pruning: PruningConfig = field(default_factory=PruningConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    source: str = field(default="<defaults>", compare=False)
    #: Printed when the run starts and kept in its manifest.json (a setting the run caps).
    warnings: tuple[str, ...] = field(default=(), compare=False)
    #: The "section.key"s the user set (file and --set), for checks that need the data.
    user_keys: frozenset[str] = field(default=frozenset(), compare=False)

    def replace(self, **sections: Any) -> "ExperimentConfig":
        return dataclasses.replace(self, **sections)


SECTIONS = ("experiment", "data", "model", "client", "server", "simulation", "deployment", "privacy",
            "pruning", "tracking", "audit")


# --------------------------------------------------------------------------- validation


def _type_name(tp: Any) -> str:
    if get_origin(tp) is tuple:
        return f"list of {get_args(tp)[0].__name__}"
    return {int: "integer", float: "number", str: "string", bool: "true/false"}.get(tp, str(tp))


def check_dir_name(where: str, key: str, value: str) -> str:
    """``value`` as one directory name under the output root, or a ConfigError.

    Experiment names, compared model kinds and sweep names become path components of a
    run directory: "../x" would write outside the output root and an absolute name would
    replace it (pathlib's rule), so neither a separator nor "."/".." is allowed.
    """
    if not value:
        why = "it is empty"
    elif value in (".", ".."):
        why = f"{value!r} is not a name"
    elif "/" in value or "\\" in value:
        why = "it contains a path separator"
    elif any(ord(c) < 32 or ord(c) == 127 for c in value):
        why = "it contains a control character"
    else:
        return value
    raise ConfigError(f"{where}: {key} = {value!r}: expected a plain name (it becomes a directory "
                      f"name under the output root), but {why}")


def _coerce(where: str, key: str, value: Any, tp: Any, meta: dict) -> Any:
    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{where}: {key} = {value!r}: expected {expected}")

    if get_origin(tp) is tuple:
        if not isinstance(value, (list, tuple)):
            raise bad(_type_name(tp))
        inner = get_args(tp)[0]
        items = tuple(_coerce(where, f"{key}[{i}]", v, inner, {**meta, "choices": None})
                      for i, v in enumerate(value))
        if meta.get("choices"):
            for v in items:
                if v not in meta["choices"]:
                    raise bad("items from " + ", ".join(map(repr, meta["choices"])))
        return items
    if tp is bool:
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer" + _range_text(meta))
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number" + _range_text(meta))
        value = float(value)
        if not math.isfinite(value):  # NaN passes every range check (comparisons are False)
            raise bad("a finite number" + _range_text(meta))
    elif tp is str:
        if meta.get("bool_ok") and isinstance(value, bool):
            value = "true" if value else "false"
        if not isinstance(value, str):
            raise bad("a string" + (_choice_text(meta) if meta.get("choices") else ""))
        if meta.get("dir_name"):
            check_dir_name(where, key, value)
    if meta.get("choices") and value not in meta["choices"]:
        raise bad("one of " + _choice_text(meta))
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is not None and (value < lo or (meta.get("lo_open") and value == lo)):
        raise bad(_type_name(tp) + _range_text(meta))
    if hi is not None and value > hi:
        raise bad(_type_name(tp) + _range_text(meta))
    return value


def _choice_text(meta: dict) -> str:
    return ", ".join(repr(c) for c in meta["choices"])


def _range_text(meta: dict) -> str:
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is None and hi is None:
        return ""
    left = f"> {lo}" if meta.get("lo_open") else f">= {lo}"
    if hi is None:
        return f" {left}"
    return f" {left} and <= {hi}" if lo is not None else f" <= {hi}"


def _build_section(where: str, name: str, cls: type, raw: Any, origins: dict[str, str]) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: [{name}] must be a table, got {raw!r}")
    hints = get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    values = {}
    for key, value in raw.items():
        at = origins.get(f"{name}.{key}", where)
        if key not in known:
            raise ConfigError(
                f"{at}: unknown key {name}.{key}; expected one of: {', '.join(sorted(known))}")
        values[key] = _coerce(at, f"{name}.{key}", value, hints[key], dict(known[key].metadata))
    return cls(**values)


def from_dict(raw: dict, where: str = "<dict>", *, explicit: set[str] | None = None,
              generated: set[str] = frozenset(), origins: dict[str, str] | None = None) -> ExperimentConfig:
    """Validate a nested dict (as parsed from TOML) into an ExperimentConfig.

    ``explicit``: the "section.key"s the user set (file and --set); with it, settings that
    contradict each other are errors (:func:`_check_conflicts`). ``generated``: keys a
    tool set for the user (a sweep point's privacy settings), never in conflict.
    ``origins``: where a key's value came from, for its error message (an override).
    """
    for key in raw:
        if key not in SECTIONS:
            raise ConfigError(
                f"{where}: unknown section [{key}]; expected one of: {', '.join(SECTIONS)}")
    hints = get_type_hints(ExperimentConfig)
    sections = {s: _build_section(where, s, hints[s], raw.get(s, {}), origins or {}) for s in SECTIONS}
    if sections["data"].vocab_source == "auto":
        # A DP run must not read the private clients' raw word counts by default.
        sections["data"] = dataclasses.replace(
            sections["data"], vocab_source="public" if sections["privacy"].enabled else "train")
    exp = sections["experiment"]
    if exp.seeds and "seed" in raw.get("experiment", {}):
        raise ConfigError(f"{where}: experiment.seed = {exp.seed} and experiment.seeds = "
                          f"{list(exp.seeds)} are both set: expected one of them (seeds trains "
                          "once per seed)")
    if len(set(exp.seeds)) != len(exp.seeds):
        raise ConfigError(f"{where}: experiment.seeds = {list(exp.seeds)}: expected distinct seeds")
    cfg = ExperimentConfig(**sections, source=where, user_keys=frozenset((explicit or set()) - generated))
    _check_cross_fields(cfg, where)
    if explicit is not None:
        _check_conflicts(cfg, where, explicit - generated, generated)
    return cfg


#: Section switches whose section's other keys do nothing while the switch is off.
SWITCHES = {"privacy": "privacy.enabled", "pruning": "pruning.enabled"}


def _check_conflicts(cfg: ExperimentConfig, where: str, explicit: set[str], generated: set[str]) -> None:
    """Errors for settings the user gave that cannot all hold; defaults never conflict.

    README ("Errors and warnings") lists these cases.
    """
    p = cfg.privacy
    if {"privacy.noise_multiplier", "privacy.target_epsilon"} <= explicit and p.target_epsilon > 0:
        raise ConfigError(
            f"{where}: privacy.noise_multiplier = {p.noise_multiplier} and privacy.target_epsilon = "
            f"{p.target_epsilon}: expected one of them (a target epsilon calibrates the noise "
            "multiplier, replacing the given one)")
    for section, switch in SWITCHES.items():
        if getattr(cfg, section).enabled or switch in explicit or switch in generated:
            continue  # on, or turned off on purpose (e.g. --set privacy.enabled=false)
        keys = sorted(k for k in explicit if k.startswith(section + ".") and k != switch)
        if keys:
            k = keys[0]
            value = getattr(getattr(cfg, section), k.split(".", 1)[1])
            raise ConfigError(
                f"{where}: {k} = {value!r} is set but {switch} is false (the default), so it "
                f"would have no effect; add {switch} = true, or remove "
                + ", ".join(keys))
    # As for the switches above: a file that states ray_address = "" (a resolved config) means it.
    if ("simulation.cpus_per_worker" in explicit and not cfg.simulation.ray_address
            and "simulation.ray_address" not in explicit):
        raise ConfigError(
            f"{where}: simulation.cpus_per_worker = {cfg.simulation.cpus_per_worker:g} is set but "
            "simulation.ray_address is '' (a local Ray, which runs simulation.num_workers workers "
            "of one CPU each), so it would have no effect; set simulation.ray_address, or remove "
            "simulation.cpus_per_worker")


def _check_ray_address(address: str, where: str) -> None:
    if address in ("", "auto"):
        return
    host, sep, port = address.rpartition(":")
    if (sep and host and not any(c.isspace() for c in host) and "/" not in host
            and port.isdigit() and 0 < int(port) < 65536):
        return
    raise ConfigError(f"{where}: simulation.ray_address = {address!r}: expected '' (start a local "
                      "Ray), 'auto' or host:port of a running Ray cluster's head, e.g. "
                      "'10.0.0.5:6379'")


def _check_cross_fields(cfg: ExperimentConfig, where: str) -> None:
    _check_ray_address(cfg.simulation.ray_address, where)
    d = cfg.data
    if d.source in ("jsonl", "folder", "stackoverflow_sqlite") and not d.path:
        raise ConfigError(f"{where}: data.path = '': expected a path when data.source = {d.source!r}")
    if cfg.server.min_clients > cfg.server.clients_per_round:
        raise ConfigError(
            f"{where}: server.min_clients = {cfg.server.min_clients}: expected <= "
            f"server.clients_per_round ({cfg.server.clients_per_round})")
    _check_client(cfg.client, where)
    p = cfg.privacy
    if p.noise_cohort_size and p.accounting_population and p.noise_cohort_size > p.accounting_population:
        raise ConfigError(
            f"{where}: privacy.noise_cohort_size = {p.noise_cohort_size}: expected <= "
            f"privacy.accounting_population ({p.accounting_population})")
    if cfg.audit.canaries and not p.enabled:
        raise ConfigError(
            f"{where}: audit.canaries = {cfg.audit.canaries}: expected privacy.enabled = true (the "
            "canaries are inserted into DP-FedAvg's clipped sum, scaled to its clip norm)")
    if p.enabled and p.mechanism == "dp_ftrl":
        _check_dp_ftrl(cfg, where)
    m = cfg.model
    if m.kind in ("transformer", "si_transformer") and m.hidden_dim % m.num_heads:
        raise ConfigError(
            f"{where}: model.num_heads = {m.num_heads}: expected a divisor of "
            f"model.hidden_dim ({m.hidden_dim})")


def _check_dp_ftrl(cfg: ExperimentConfig, where: str) -> None:
    """What DP-FTRL (strategies/dp_ftrl.py) cannot do, named by the key that asks for it."""
    p, why = cfg.privacy, None
    if p.accountant == "pld":
        why = ("privacy.accountant = 'pld': dp-accounting 0.6's PLD accountant does not support "
               "the tree-aggregation event; expected 'rdp'")
    elif p.sampling != "fixed":
        why = (f"privacy.sampling = {p.sampling!r}: DP-FTRL draws fixed-size cohorts, each client "
               "at most once per tree (no amplification by sampling); expected 'fixed'")
    elif p.adaptive_clipping:
        why = ("privacy.adaptive_clipping = true: the noisy clipped count is not tree-aggregated "
               "or accounted here; expected false")
    elif cfg.server.optimizer != "sgd":
        why = (f"server.optimizer = {cfg.server.optimizer!r}: the FTRL step replaces the server "
               "optimizer (server.lr and server.momentum set it); expected 'sgd'")
    elif cfg.audit.canaries:
        why = (f"audit.canaries = {cfg.audit.canaries}: the canary audit inserts its canaries "
               "into DP-FedAvg's clipped sum only; expected 0")
    if why:
        raise ConfigError(f"{where}: privacy.mechanism = 'dp_ftrl' with {why}")


def check_population(cfg: ExperimentConfig, population: int) -> ExperimentConfig:
    """Checks that need the number of training clients; ``cfg`` with any warnings added.

    A cohort larger than the population is capped (every client trains every round), which
    is what a user asking for "all of them" wants, so it is a warning. Fewer clients than
    server.min_clients can never complete a round: an error.
    """
    s = cfg.server
    if s.min_clients > population:
        raise ConfigError(f"{cfg.source}: server.min_clients = {s.min_clients}: expected <= the "
                          f"{population} training clients of the data, or no round could count")
    if "server.clients_per_round" in cfg.user_keys and s.clients_per_round > population:
        note = (f"server.clients_per_round = {s.clients_per_round} is more than the {population} "
                f"training clients: every round trains all {population}")
        return cfg.replace(warnings=(*cfg.warnings, note))
    return cfg


def for_runtime(cfg: ExperimentConfig, *, deployment: bool) -> ExperimentConfig:
    """Resolve the settings whose default depends on where the run executes.

    ``privacy.reproducible_noise = "auto"``: seeded noise in simulation (exact resume,
    one-worker == two-worker), OS-entropy noise in a deployment, where the run directory
    (and its seed) is meant to be handed out.
    """
    p = cfg.privacy
    if p.reproducible_noise != "auto":
        return cfg
    return cfg.replace(privacy=dataclasses.replace(
        p, reproducible_noise="false" if deployment else "true"))


def _check_client(c: ClientConfig, where: str) -> None:
    if c.optimizer != "sgd" and c.lr > ADAPTIVE_LR_MAX:
        raise ConfigError(
            f"{where}: client.lr = {c.lr!r}: expected <= {ADAPTIVE_LR_MAX} when client.optimizer "
            f"= {c.optimizer!r} (an SGD-sized rate; {c.optimizer}'s default is "
            f"{CLIENT_LR_DEFAULTS[c.optimizer]}, used when client.lr is not set)")


def to_dict(cfg: ExperimentConfig) -> dict:
    out = {}
    for s in SECTIONS:
        sec = dataclasses.asdict(getattr(cfg, s))
        out[s] = {k: list(v) if isinstance(v, tuple) else v for k, v in sec.items()}
    # Only one of seed / seeds is written, so a resolved config reads back as it was.
    out["experiment"].pop("seed" if cfg.experiment.seeds else "seeds")
    return out


def parse_override(text: str) -> tuple[str, str, Any]:
    """Parse ``section.key=value``; the value is read as a TOML value, else as a string."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(f"--set {text!r}: expected section.key=value, e.g. client.lr=0.3")
    lhs, rhs = text.split("=", 1)
    section, key = lhs.strip().split(".", 1)
    try:
        value = tomllib.loads(f"v = {rhs.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = rhs.strip()
    return section, key, value


def read_toml(path: str | Path, what: str) -> dict:
    """The parsed TOML file, or a ConfigError naming the file (``what``: "experiment", ...)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: a directory; expected an {what} TOML file")
    if not path.is_file():
        raise ConfigError(f"{path}: no such {what} file")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the {what} file ({exc})") from None


#: The file name of the config a run writes with every key spelled out (fl_sim.results).
RESOLVED_NAME = "config.resolved.toml"


def load_experiment(path: str | Path, overrides: list[str] | tuple[str, ...] = (), *,
                    generated: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Read, override and validate an experiment file.

    ``generated``: overrides a tool makes for the user (a sweep point's), applied last and
    never counted as set by the user. Every key of a run's config.resolved.toml was written
    by fl_sim, so there only --set keys count as the user's (resuming or rerunning a run
    never finds a conflict the original did not have).
    """
    path = Path(path)
    where = str(path)
    raw = read_toml(path, "experiment")
    explicit = set() if path.name == RESOLVED_NAME else {
        f"{s}.{k}" for s, sec in raw.items() if isinstance(sec, dict) for k in sec}
    origins, made = {}, set()
    overridden: set[str] = set()
    for text, by_tool in [*((t, False) for t in overrides), *((t, True) for t in generated)]:
        section, key, value = parse_override(text)
        if section not in SECTIONS:
            raise ConfigError(f"--set {text!r}: unknown section {section!r}; "
                              f"expected one of: {', '.join(SECTIONS)}")
        raw.setdefault(section, {})
        if not isinstance(raw[section], dict):
            raise ConfigError(f"{where}: [{section}] must be a table")
        other = {"seed": "seeds", "seeds": "seed"}.get(key) if section == "experiment" else None
        if other and other not in overridden:
            # An override of one replaces the file's choice of the other; both given as
            # overrides (or both in the file) is still the error from_dict reports.
            raw[section].pop(other, None)
        if section == "experiment":
            overridden.add(key)
        raw[section][key] = value
        origins[f"{section}.{key}"] = f"{where} (--set {text})"
        (made if by_tool else explicit).add(f"{section}.{key}")
    return from_dict(raw, where=where, explicit=explicit, generated=made, origins=origins)


def dumps_toml(cfg: ExperimentConfig) -> str:
    """Serialise a config back to TOML (the resolved config written into run dirs)."""
    return tomli_w.dumps(to_dict(cfg))
