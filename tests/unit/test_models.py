"""build_model for all four kinds: shapes, seeding, causality, stepwise use, save/load,
learning with SGD, and TFLite (builtin ops only) parity with Keras."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from fl_sim.config import MODEL_KINDS, ModelConfig  # noqa: E402
from fl_sim.models import (  # noqa: E402
    build_model, initial_state, make_step_fn, serving_module)

VOCAB, SEQ, BATCH = 30, 8, 3
RECURRENT = ("cifg", "si_cifg")


def tiny_cfg(kind: str) -> ModelConfig:
    return ModelConfig(kind=kind, embedding_dim=8, hidden_dim=16, projection_dim=6,
                       num_layers=2, num_heads=2, ff_dim=24)


def tokens(seed=0, batch=BATCH, seq=SEQ, vocab=VOCAB):
    return np.random.default_rng(seed).integers(0, vocab, size=(batch, seq)).astype(np.int32)


def weights_of(model):
    return [w.copy() for w in model.get_weights()]


# ------------------------------------------------------------------ shapes and seeding


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_output_shape_and_dtype(kind):
    model = build_model(tiny_cfg(kind), VOCAB, SEQ, seed=0)
    logits = model(tokens())
    assert tuple(logits.shape) == (BATCH, SEQ, VOCAB)
    assert logits.dtype == tf.float32
    assert model.inputs[0].dtype == "int32"
    assert np.all(np.isfinite(logits.numpy()))


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_same_seed_same_weights_regardless_of_global_rng(kind):
    tf.random.set_seed(1)
    np.random.seed(1)
    a = weights_of(build_model(tiny_cfg(kind), VOCAB, SEQ, seed=7))
    tf.random.set_seed(2)
    np.random.seed(2)
    _ = tf.random.uniform((5,))
    b = weights_of(build_model(tiny_cfg(kind), VOCAB, SEQ, seed=7))
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_different_seed_different_weights(kind):
    a = build_model(tiny_cfg(kind), VOCAB, SEQ, seed=7)
    b = build_model(tiny_cfg(kind), VOCAB, SEQ, seed=8)
    # biases and LayerNorm scales start constant; every other weight is random
    constant = ("bias", "gamma", "beta")
    random_pairs = [(va.path, va.numpy(), vb.numpy()) for va, vb in zip(a.weights, b.weights)
                    if not any(k in va.path for k in constant)]
    assert len(random_pairs) >= 4
    for path, x, y in random_pairs:
        assert not np.array_equal(x, y), path


def test_layers_get_distinct_initialisations():
    # two same-shaped matrices must not share an initialiser seed
    model = build_model(tiny_cfg("transformer"), VOCAB, SEQ, seed=0)
    a = model.get_layer("block_0").attn.out_kernel.numpy()
    b = model.get_layer("block_1").attn.out_kernel.numpy()
    assert not np.array_equal(a, b)


def test_unknown_kind_is_rejected():
    with pytest.raises(ValueError, match="unknown model kind"):
        build_model(ModelConfig(kind="gru"), VOCAB, SEQ, seed=0)


# ------------------------------------------------------------------ causality, stepwise, save


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_logits_are_causal(kind):
    model = build_model(tiny_cfg(kind), VOCAB, SEQ, seed=0)
    x = tokens(1)
    y = x.copy()
    y[:, 5:] = (y[:, 5:] + 1) % VOCAB           # change only the future
    a, b = model(x).numpy(), model(y).numpy()
    np.testing.assert_allclose(a[:, :5], b[:, :5], atol=1e-6)
    assert np.abs(a[:, 5:] - b[:, 5:]).max() > 1e-6


@pytest.mark.parametrize("kind", RECURRENT)
def test_step_fn_reproduces_sequence_model(kind):
    model = build_model(tiny_cfg(kind), VOCAB, SEQ, seed=3)
    x = tokens(2)
    expected = model(x).numpy()
    step = make_step_fn(model, batch_size=BATCH)
    h, c = initial_state(model, BATCH)
    assert h.shape == (BATCH, 6) and c.shape == (BATCH, 16)
    # The step and the unrolled sequence compute the same recurrence with differently fused
    # kernels, so float32 rounding differs and accumulates over the steps; SI-CIFG divides by
    # a data-dependent max each step, which amplifies it. Measured max |difference|: below
    # 1e-5 with the default kernels, 1.03e-5 with ONEDNN_MAX_CPU_ISA=AVX2 (AMD EPYC). 1e-4 is
    # the float32 parity tolerance of the TFLite tests, still ~1000x below these logits'
    # scale (~0.1): a dropped state (zero state every step) moves them by 6e-3 (CIFG) and
    # 0.76 (SI-CIFG), measured, and fails.
    for t in range(SEQ):
        logits, h, c = step(tf.constant(x[:, t]), h, c)
        np.testing.assert_allclose(logits.numpy(), expected[:, t], atol=1e-4)


def test_step_fn_uses_the_live_weights():
    model = build_model(tiny_cfg("si_cifg"), VOCAB, SEQ, seed=3)
    step = make_step_fn(model)
    h, c = initial_state(model)
    before = step(tf.constant([5]), h, c)[0].numpy()
    out = model.get_layer("logits")
    out.bias.assign(out.bias + 1.0)
    after = step(tf.constant([5]), h, c)[0].numpy()
    np.testing.assert_allclose(after, before + 1.0, atol=1e-5)


def test_make_step_fn_rejects_transformers():
    with pytest.raises(ValueError, match="cifg"):
        make_step_fn(build_model(tiny_cfg("transformer"), VOCAB, SEQ, seed=0))


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_save_and_load_round_trip(kind, tmp_path):
    model = build_model(tiny_cfg(kind), VOCAB, SEQ, seed=4)
    path = tmp_path / f"{kind}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    x = tokens(3)
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), atol=1e-6)


# SI-Transformer relations (attention invariance, homogeneity, LayerNorm eps): see
# tests/unit/test_si_transformer.py.


# ------------------------------------------------------------------ learning with SGD


def repetitive_batch(rng, batch, seq):
    """Period-6 cycle 1 2 3 1 4 5 at a random offset: after '1' the next token depends on
    the token before it, so the model needs context beyond the current token."""
    pattern = np.array([1, 2, 3, 1, 4, 5])
    offsets = rng.integers(0, 6, size=(batch, 1))
    seqs = pattern[(offsets + np.arange(seq + 1)) % 6]
    return seqs[:, :-1].astype(np.int32), seqs[:, 1:].astype(np.int32)


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_sgd_learns_a_repetitive_sequence(kind):
    # Prepare
    vocab, seq = 8, 10
    cfg = ModelConfig(kind=kind, embedding_dim=16, hidden_dim=32, projection_dim=16,
                      num_layers=1, num_heads=2, ff_dim=32)
    model = build_model(cfg, vocab, seq, seed=0)
    opt = keras.optimizers.SGD(0.5)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    rng = np.random.default_rng(0)
    # Execute
    losses = [float(train_step(*repetitive_batch(rng, 16, seq))) for _ in range(300)]
    # Assert: from about log(8) = 2.1 to well below; only the first target is ambiguous
    start, end = np.mean(losses[:5]), np.mean(losses[-20:])
    assert np.isfinite(end)
    assert end < 0.35 and end < 0.2 * start, (start, end)


# ------------------------------------------------------------------ TFLite parity


def _interpreter(tflite_bytes):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # Reference kernels: the XNNPACK delegate's float rounding differs slightly, and the SI
    # recurrence amplifies rounding over time steps (see the report / lm docs).
    interp = Interpreter(model_content=tflite_bytes,
                         experimental_op_resolver_type=
                         OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
    ops = {op["op_name"] for op in interp._get_ops_details()}
    assert not any(op.startswith("Flex") or op == "CUSTOM" for op in ops), ops
    return interp


def _convert(converter):
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


@pytest.mark.parametrize("via", ["concrete_function", "keras_model"])
@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_tflite_builtin_conversion_matches_keras(kind, via):
    model = build_model(tiny_cfg(kind), VOCAB, SEQ, seed=5)
    x = tokens(4)
    expected = model(x).numpy()
    if via == "concrete_function":
        mod = serving_module(model, batch_size=BATCH)
        converter = tf.lite.TFLiteConverter.from_concrete_functions(
            [mod.sequence.get_concrete_function()], mod)
    else:
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
    interp = _interpreter(_convert(converter))
    inp = interp.get_input_details()[0]
    if tuple(inp["shape"]) != (BATCH, SEQ):
        interp.resize_tensor_input(inp["index"], [BATCH, SEQ])
        interp.allocate_tensors()
    interp.set_tensor(inp["index"], x)
    interp.invoke()
    got = interp.get_tensor(interp.get_output_details()[0]["index"])
    np.testing.assert_allclose(got, expected, atol=1e-4)


@pytest.mark.parametrize("kind", RECURRENT)
def test_tflite_step_function_matches_keras(kind):
    model = build_model(tiny_cfg(kind), VOCAB, SEQ, seed=6)
    x = tokens(5, batch=1)
    expected = model(x).numpy()[0]                              # [T, V]
    mod = serving_module(model, batch_size=1)
    interp = _interpreter(_convert(
        tf.lite.TFLiteConverter.from_concrete_functions([mod.step.get_concrete_function()],
                                                        mod)))
    runner = interp.get_signature_runner()
    h, c = initial_state(model, 1)
    for t in range(SEQ):
        out = runner(token=x[:, t], h=h, c=c)
        h, c = out["h"], out["c"]
        np.testing.assert_allclose(out["logits"][0], expected[t], atol=1e-4)
