"""client.optimizer: SGD, Adam and Adagrad steps against NumPy references of Keras's
formulas, fresh state for every client, the state's size, and the lr defaults and checks."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import dataclasses  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from clients.trainer import LocalTrainer  # noqa: E402
from fl_sim.config import (CLIENT_LR_DEFAULTS, OPTIMIZER_SLOTS, ClientConfig,  # noqa: E402
                           ConfigError, ExperimentConfig, ModelConfig, from_dict)
from fl_sim.evaluation import masked_mean_loss  # noqa: E402
from fl_sim.models import build_model  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
VOCAB, SEQ, BATCH, STEPS = 30, 6, 4, 3
LR = {"sgd": 0.3, "adam": 0.01, "adagrad": 0.05}


def experiment(optimizer: str, xla: bool = False) -> ExperimentConfig:
    return ExperimentConfig(
        model=ModelConfig(kind="cifg", embedding_dim=6, hidden_dim=8, projection_dim=5),
        # 12 sequences, batch 4, one epoch: exactly STEPS = 3 steps per client.
        client=ClientConfig(optimizer=optimizer, lr=LR[optimizer], batch_size=BATCH,
                            local_epochs=1, xla=xla))


def sequences(seed: int, n: int = BATCH * STEPS) -> np.ndarray:
    return np.random.default_rng(seed).integers(4, VOCAB, size=(n, SEQ + 1)).astype(np.int32)


def gradients(model, weights: list[np.ndarray], batch: np.ndarray) -> list[np.ndarray]:
    """The loss gradient at ``weights`` (the trainer's loss, computed here on its own)."""
    for v, w in zip(model.trainable_variables, weights):
        v.assign(w)
    with tf.GradientTape() as tape:
        loss = masked_mean_loss(model(batch[:, :-1], training=True), batch[:, 1:])
    return [tf.convert_to_tensor(g).numpy().astype(np.float64)
            for g in tape.gradient(loss, model.trainable_variables)]


def numpy_reference(optimizer: str, model, start: list[np.ndarray], batches: np.ndarray):
    """Keras's update rules written out in float64, from fresh state.

    SGD:     w -= lr g
    Adam:    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2  (Keras writes m += (g - m)(1 - b1))
             w -= lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps),  eps outside the
             bias correction; b1 0.9, b2 0.999, eps 1e-7
    Adagrad: a = 0.1 initially;  a += g^2;  w -= lr g / sqrt(a + eps),  eps 1e-7 inside
    """
    lr = LR[optimizer]
    w = [x.astype(np.float64) for x in start]
    m = [np.zeros_like(x) for x in w]
    v = [np.zeros_like(x) for x in w]
    acc = [np.full_like(x, 0.1) for x in w]
    for t, batch in enumerate(batches, start=1):
        g = gradients(model, [x.astype(np.float32) for x in w], batch)
        for i in range(len(w)):
            if optimizer == "sgd":
                w[i] = w[i] - lr * g[i]
            elif optimizer == "adam":
                m[i] = 0.9 * m[i] + 0.1 * g[i]
                v[i] = 0.999 * v[i] + 0.001 * g[i] ** 2
                alpha = lr * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
                w[i] = w[i] - alpha * m[i] / (np.sqrt(v[i]) + 1e-7)
            else:
                acc[i] = acc[i] + g[i] ** 2
                w[i] = w[i] - lr * g[i] / np.sqrt(acc[i] + 1e-7)
    return w


@pytest.fixture(scope="module")
def trainers():
    return {opt: LocalTrainer(experiment(opt), VOCAB, SEQ) for opt in ("sgd", "adam", "adagrad")}


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adagrad"])
def test_three_steps_match_the_numpy_reference(trainers, optimizer):
    # Prepare: the trainer's own batches for this client (its seeded shuffle), so the
    # reference replays exactly the steps the trainer takes.
    trainer = trainers[optimizer]
    start = trainer.get_weights()
    seqs = sequences(1)
    batches = trainer.batches_for(seqs, 2, "c1")
    assert len(batches) == STEPS

    # Execute
    delta, metrics = trainer.train(start, seqs, server_round=2, client_id="c1")
    model = build_model(experiment(optimizer).model, VOCAB, SEQ, seed=0)  # for the gradients
    expected = numpy_reference(optimizer, model, start, batches)

    # Assert. The trainer runs float32, the reference float64 from float32 gradients (the
    # same TF gradient ops, evaluated by another tf.function), so the two differ by float32
    # rounding: ~1e-7 relative per op, through three steps. Adam's and Adagrad's steps are
    # about lr per weight (lr * g / |g| for Adam), and their rounding error is relative to
    # that step; where |g| is near Adam's eps / sqrt(1 - b2) = 3e-6 the step depends on
    # g's rounding more, hence the bound 1e-4 * lr per step on top of 1e-5 relative.
    assert metrics["steps"] == STEPS
    got = [s + d for s, d in zip(start, delta)]
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=STEPS * 1e-4 * LR[optimizer])
    # The steps moved the weights by far more than the tolerance.
    moved = max(float(np.max(np.abs(d))) for d in delta)
    assert moved > 100 * STEPS * 1e-4 * LR[optimizer]


@pytest.mark.parametrize("optimizer", ["adam", "adagrad"])
def test_state_starts_fresh_for_every_client(trainers, optimizer):
    # Prepare: client A, then B, then B again, all from the same global weights.
    trainer = trainers[optimizer]
    start = trainer.get_weights()

    # Execute
    trainer.train(start, sequences(10), 1, "a")
    first_b, _ = trainer.train(start, sequences(11), 1, "b")
    trainer.train(start, sequences(12), 1, "c")
    again_b, _ = trainer.train(start, sequences(11), 1, "b")

    # Assert: bit for bit (same ops, same inputs, op-deterministic kernels), so B's result
    # depends on nothing trained before it; carried-over moments or accumulators, or a step
    # counter not reset (Adam's bias correction), would change it.
    for x, y in zip(first_b, again_b):
        np.testing.assert_array_equal(x, y)
    # ... and the state is back at its initial values after the reset.
    trainer._reset_optimizer()
    for v, init in zip(trainer.optimizer.variables, trainer._state_init):
        np.testing.assert_array_equal(v.numpy(), init)
    assert int(trainer.optimizer.iterations.numpy()) == 0


def test_adam_under_xla_matches_the_graph(trainers):
    # The Keras optimizer inside the XLA-compiled step: same math (tolerance as in
    # tests/unit/test_trainer_xla.py, 1e-4 relative on the delta).
    graph = trainers["adam"]
    xla = LocalTrainer(experiment("adam", xla=True), VOCAB, SEQ)
    start = graph.get_weights()
    d_graph, _ = graph.train(start, sequences(3), 1, "x")
    d_xla, _ = xla.train(start, sequences(3), 1, "x")
    diff = np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(d_graph, d_xla)))
    norm = np.sqrt(sum(np.sum(a ** 2) for a in d_graph))
    assert diff / norm < 1e-4


def test_state_bytes_are_the_slots_times_the_parameters(trainers):
    params = sum(w.size for w in trainers["sgd"].get_weights())
    for opt, trainer in trainers.items():
        assert trainer.optimizer_state_bytes == OPTIMIZER_SLOTS[opt] * params * 4
        _, metrics = trainer.train(trainer.get_weights(), sequences(4), 1, "m")
        assert metrics["optimizer_state_bytes"] == trainer.optimizer_state_bytes
    assert trainers["adam"].optimizer_state_bytes == 2 * params * 4


# ------------------------------------------------------------------ config


def test_each_optimizer_has_its_own_default_lr():
    for opt in ("sgd", "adam", "adagrad"):
        cfg = from_dict({"client": {"optimizer": opt}})
        assert cfg.client.lr == CLIENT_LR_DEFAULTS[opt]
    assert from_dict({"client": {"optimizer": "adam", "lr": 0.003}}).client.lr == 0.003
    assert ClientConfig().lr == 0.5 and ClientConfig().optimizer == "sgd"


def test_an_sgd_sized_lr_is_rejected_for_adaptive_optimizers():
    with pytest.raises(ConfigError) as e:
        from_dict({"client": {"optimizer": "adam", "lr": 0.5}}, where="exp.toml")
    msg = str(e.value)
    assert "exp.toml" in msg and "client.lr = 0.5" in msg and "adam" in msg and "0.001" in msg
    with pytest.raises(ConfigError, match="client.optimizer = 'rmsprop'"):
        from_dict({"client": {"optimizer": "rmsprop"}})


def test_the_resolved_lr_round_trips_through_the_written_config():
    from fl_sim.config import dumps_toml
    import tomllib

    cfg = from_dict({"client": {"optimizer": "adagrad"}})
    again = from_dict(tomllib.loads(dumps_toml(cfg)))
    assert again.client == cfg.client
    assert dataclasses.replace(cfg.client, lr=0.02).lr == 0.02


def test_client_optimizer_sweep_loads():
    from fl_sim.app.sweep import load_sweep

    # Loading validates every point's config (an Adam point with SGD's lr would fail).
    # Adam's grid here; SGD's is client_lr.toml's, on the same base experiment and seeds.
    sweep = load_sweep(REPO / "experiments" / "sweeps" / "client_optimizer.toml")
    sgd = load_sweep(REPO / "experiments" / "sweeps" / "client_lr.toml")
    clients = [sweep.point_config(p).client for p in sweep.points]
    assert {c.optimizer for c in clients} == {"adam"} and len({c.lr for c in clients}) >= 2
    sgd_clients = [sgd.point_config(p).client for p in sgd.points]
    assert {c.optimizer for c in sgd_clients} == {"sgd"} and len({c.lr for c in sgd_clients}) >= 2
    assert sweep.experiment == sgd.experiment
    assert {p.seed for p in sweep.points} == {p.seed for p in sgd.points} and len({p.seed for p in sweep.points}) >= 2
    assert {p.model for p in sweep.points} == {p.model for p in sgd.points}


@pytest.mark.parametrize("body,needle", [
    ('variants = ["adam"]\n', "sweep.variants = ['adam']: expected a table"),
    ('noise_multipliers = [1]\n[sweep.variants]\na = ["client.lr=0.1"]\n', "exactly one of"),
    ('[sweep.variants]\na = [\'client.optimizer="adam"\', "client.lr=0.5"]\n', "client.lr = 0.5"),
])
def test_bad_variant_sweeps(tmp_path, body, needle):
    from fl_sim.app.sweep import load_sweep

    (tmp_path / "base.toml").write_text('[data]\nsource = "synthetic"\n')
    p = tmp_path / "s.toml"
    p.write_text('[sweep]\nname = "x"\nexperiment = "base.toml"\n' + body)
    with pytest.raises(ConfigError) as e:
        load_sweep(p)
    assert needle in str(e.value)
