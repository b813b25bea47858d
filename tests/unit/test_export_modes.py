"""Export modes of the fl_sim layers (``fl_sim.models.export_mode``) and ``export_copy``:
same weights, same outputs, the gradients the training export relies on, and no
monkey-patching left in ``fl_sim/export/signatures.py``."""

from __future__ import annotations

import ast
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from fl_sim.config import MODEL_KINDS, ModelConfig  # noqa: E402
from fl_sim.models import CIFGCell, CausalSelfAttention, build_model, export_copy  # noqa: E402
from fl_sim.models.export_mode import relu_builtin_grad  # noqa: E402

VOCAB, SEQ, BATCH = 30, 8, 3
SIGNATURES = Path(__file__).resolve().parents[2] / "fl_sim" / "export" / "signatures.py"


def tiny_cfg(kind: str) -> ModelConfig:
    return ModelConfig(kind=kind, embedding_dim=8, hidden_dim=16, projection_dim=6,
                       num_layers=2, num_heads=2, ff_dim=24)


def tokens(seed=0):
    return np.random.default_rng(seed).integers(0, VOCAB, size=(BATCH, SEQ)).astype(np.int32)


def _imported_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names |= {a.asname or a.name for a in node.names}
    return names


def _root(node):
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def test_signatures_module_assigns_no_attribute_of_an_imported_module_or_class():
    # A monkey-patch is an assignment to an attribute of something imported (tf.nn.relu,
    # scale_invariant.TINY, CausalSelfAttention.call), or setattr on it.
    tree = ast.parse(SIGNATURES.read_text())
    imported = _imported_names(tree)
    offences = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("setattr", "delattr") and node.args):
            targets = [ast.Attribute(value=node.args[0], attr="?")]
        for t in targets:
            for sub in ast.walk(t):
                if isinstance(sub, ast.Attribute) and _root(sub) in imported:
                    offences.append(f"line {node.lineno}: {ast.unparse(sub)}")
    assert not offences, offences
    assert "monkeypatch" not in SIGNATURES.read_text().lower()


# ------------------------------------------------------------------ export_copy


@pytest.mark.parametrize("mode", ["inference", "training"])
@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_export_copy_has_the_same_weights_and_outputs(kind, mode):
    model = build_model(tiny_cfg(kind), VOCAB, SEQ, seed=2)
    copy = export_copy(model, mode)
    assert [v.path for v in copy.weights] == [v.path for v in model.weights]
    for a, b in zip(copy.weights, model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    x = tokens(1)
    # Same ops in the same order except: the inference mask gives a masked position weight
    # <= T * exp(-30 - max allowed score) instead of exp(-1e9) (~1e-12 here), and the
    # inference SI guard differs only for denominators below 2**-14, which random weights
    # do not produce. 1e-6 is a few float32 ulps of logits of size ~1.
    np.testing.assert_allclose(copy(x).numpy(), model(x).numpy(), rtol=0, atol=1e-6)
    for layer in copy.layers:
        if "export_mode" in layer.get_config():
            assert layer.get_config()["export_mode"] == mode, layer.name
    for layer in model.layers:                              # the original is untouched
        if "export_mode" in layer.get_config():
            assert layer.get_config()["export_mode"] is None, layer.name


def test_export_copy_does_not_share_variables():
    model = build_model(tiny_cfg("si_transformer"), VOCAB, SEQ, seed=2)
    copy = export_copy(model, "training")
    out = copy.get_layer("logits")
    out.bias.assign(out.bias + 1.0)
    assert np.all(model.get_layer("logits").bias.numpy() == 0.0)


def test_unknown_export_mode_is_rejected_naming_it():
    with pytest.raises(ValueError, match="export_mode.*'int8'"):
        CausalSelfAttention(2, export_mode="int8")
    with pytest.raises(ValueError, match="export_mode"):
        export_copy(build_model(tiny_cfg("cifg"), VOCAB, SEQ, seed=0), "train")


# ------------------------------------------------------------------ what each mode changes


def test_builtin_grad_relu_matches_tf_relu_in_value_and_gradient():
    x = tf.constant(np.random.default_rng(3).normal(size=(4, 50)).astype(np.float32))
    w = tf.constant(np.random.default_rng(4).normal(size=(4, 50)).astype(np.float32))
    grads = []
    for relu in (tf.nn.relu, relu_builtin_grad):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = relu(x)
            loss = tf.reduce_sum(y * w)
        grads.append((y.numpy(), tape.gradient(loss, x).numpy()))
    # both are exact: max(x, 0) and dy * 1{x > 0} involve no rounding
    np.testing.assert_array_equal(grads[0][0], grads[1][0])
    np.testing.assert_array_equal(grads[0][1], grads[1][1])


def _op_types(fn, *specs):
    graph = tf.function(fn).get_concrete_function(*specs).graph
    return {op.type for op in graph.get_operations()}


@pytest.mark.parametrize("kind", ["si_cifg", "transformer", "si_transformer"])
def test_training_mode_gradients_have_no_relu_grad_or_strided_slice_grad(kind):
    model = build_model(tiny_cfg(kind), VOCAB, SEQ, seed=0)

    def grads_of(m):
        def fn(x):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(m(x) ** 2)
            return tape.gradient(loss, m.trainable_variables)
        return _op_types(fn, tf.TensorSpec([BATCH, SEQ], tf.int32))

    plain, training = grads_of(model), grads_of(export_copy(model, "training"))
    assert "ReluGrad" in plain                      # the op the training mode avoids
    assert not {"ReluGrad", "StridedSliceGrad"} & training, training


def test_inference_mode_softmax_mask_is_finite():
    # The int8-friendly mask: no -1e9 constant anywhere in the traced attention.
    layer = CausalSelfAttention(2, export_mode="inference", seed=1)
    x = tf.random.stateless_normal((1, SEQ, 8), seed=(1, 2))
    layer(x)
    graph = tf.function(layer).get_concrete_function(tf.TensorSpec([1, SEQ, 8])).graph
    consts = [op.get_attr("value") for op in graph.get_operations() if op.type == "Const"]
    values = [tf.make_ndarray(c) for c in consts]
    assert max(np.abs(v).max() for v in values if v.dtype == np.float32 and v.size) <= 30.0


def test_inference_mode_guard_is_nonzero_in_float16():
    # An all-zero SI gate: with the float16-safe guard a float16 graph gives 0, not NaN.
    cell = CIFGCell(4, scale_invariant=True, export_mode="inference")
    z = tf.zeros((1, 4), tf.float16)
    assert np.all(cell._gate(z).numpy() == 0) and np.all(cell._act(z).numpy() == 0)
    plain = CIFGCell(4, scale_invariant=True)
    assert np.all(np.isnan(plain._act(z).numpy()))    # the failure the mode exists for
