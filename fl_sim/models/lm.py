"""Next-word-prediction language models: ``build_model`` and the stepwise recurrent helper.

All four kinds map int32 token ids [B, T] (PAD = 0) to float32 logits [B, T, V] (no
softmax; train with ``from_logits=True``):

    cifg / si_cifg (the TFF Stack Overflow / Gboard shape):
        Embedding(V, E)                       [B, T] -> [B, T, E]
        CIFG(H, projection P)                 -> [B, T, P or H]      layer "cifg"
        Dense(E), linear                      -> [B, T, E]           layer "proj"
        Dense(V)                              -> [B, T, V]           layer "logits"

    transformer / si_transformer (width D = hidden_dim; embedding_dim and projection_dim
    are not used):
        Embedding(V, D) + learned positions   [B, T] -> [B, T, D]
        num_layers x pre-LN TransformerBlock  -> [B, T, D]
        LayerNorm, Dense(V)                   -> [B, T, V]
    si_transformer: SIBERT-style blocks (no biases, ReLU attention normalised by its row
    sum, LayerNorms without gain or bias, the final one included; ``transformer.py``).

The linear Dense(E) between the recurrent body and the logits follows the TFF Stack
Overflow next-word model (``create_recurrent_model``): it keeps the big [E, V] output matrix
the same size as the input embedding. Input and output embeddings are not tied.

Weights are a deterministic function of ``seed``: every layer gets its own initialiser seed
derived from (seed, layer name); no global RNG is touched.

Stepwise recurrent inference (for on-device TFLite export) uses the SAME layer objects as
the sequence model::

    step = make_step_fn(model, batch_size=1)
    h, c = initial_state(model, batch_size=1)
    for token in tokens:                        # token: int32 [1]
        logits, h, c = step(token, h, c)        # logits [1, V], h [1, P or H], c [1, H]

For export, :func:`serving_module` wraps the model in a ``tf.Module`` with fixed-shape
``sequence`` and (recurrent kinds) ``step`` functions and the model's variables tracked::

    mod = serving_module(model, batch_size=1)
    conv = tf.lite.TFLiteConverter.from_concrete_functions(
        [mod.step.get_concrete_function()], mod)       # or mod.sequence
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]

Pass ``mod`` (not the Keras model) as the converter's trackable object: Keras 3 variables are
not visible to TF's object tracking through a ``keras.Model``, and the converter then leaves
them as uninitialised resource variables (the interpreter fails on READ_VARIABLE or returns
NaN). ``tf.lite.TFLiteConverter.from_keras_model(model)`` also works (sequence model only).

``export_copy(model, mode)`` is the same model (same weight values and paths) with its
layers in an export mode (``fl_sim.models.export_mode``: int8-friendly causal mask and a
float16-safe guard for inference files, builtin-op ReLU gradients for on-device training).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from fl_sim.config import ModelConfig
from fl_sim.models.cifg import CIFG, derive_seed
from fl_sim.models.export_mode import check_export_mode
from fl_sim.models.transformer import PositionEmbedding, TransformerBlock, layer_norm

RECURRENT_KINDS = ("cifg", "si_cifg")
TRANSFORMER_KINDS = ("transformer", "si_transformer")


def build_model(cfg: ModelConfig, vocab_size: int, seq_len: int, seed: int) -> keras.Model:
    """Build an uncompiled Keras LM: int32 [batch, seq_len] -> float32 logits [batch, seq_len, V].

    Parameters
    ----------
    cfg : ModelConfig
        ``kind`` picks cifg, si_cifg, transformer or si_transformer.
    vocab_size : int
        V, including the special tokens (PAD = 0).
    seq_len : int
        T; static, because the recurrent models unroll over time and the transformer's
        position table and causal mask have this size.
    seed : int
        Initial weights are a deterministic function of it.
    """
    tokens = keras.Input(shape=(seq_len,), dtype="int32", name="tokens")     # [B, T]
    glorot = keras.initializers.GlorotUniform
    if cfg.kind in RECURRENT_KINDS:
        x = keras.layers.Embedding(
            vocab_size, cfg.embedding_dim, name="embedding",
            embeddings_initializer=keras.initializers.RandomUniform(
                -0.05, 0.05, seed=derive_seed(seed, "embedding")))(tokens)   # [B, T, E]
        x = CIFG(cfg.hidden_dim, projection_dim=cfg.projection_dim,
                 scale_invariant=cfg.kind == "si_cifg", seed=derive_seed(seed, "cifg"),
                 name="cifg")(x)                                             # [B, T, P|H]
        x = keras.layers.Dense(cfg.embedding_dim, name="proj",
                               kernel_initializer=glorot(seed=derive_seed(seed, "proj")))(x)
    elif cfg.kind in TRANSFORMER_KINDS:
        si = cfg.kind == "si_transformer"
        x = keras.layers.Embedding(
            vocab_size, cfg.hidden_dim, name="embedding",
            embeddings_initializer=keras.initializers.RandomNormal(
                stddev=0.02, seed=derive_seed(seed, "embedding")))(tokens)   # [B, T, D]
        x = PositionEmbedding(seq_len, seed=derive_seed(seed, "position"), name="position")(x)
        for i in range(cfg.num_layers):
            x = TransformerBlock(cfg.hidden_dim, cfg.num_heads, cfg.ff_dim, scale_invariant=si,
                                 seed=derive_seed(seed, f"block_{i}"), name=f"block_{i}")(x)
        x = layer_norm(si, name="final_norm")(x)
    else:
        raise ValueError(f"unknown model kind {cfg.kind!r}; expected one of "
                         f"{RECURRENT_KINDS + TRANSFORMER_KINDS}")
    logits = keras.layers.Dense(vocab_size, name="logits",
                                kernel_initializer=glorot(seed=derive_seed(seed, "logits")))(x)
    return keras.Model(tokens, logits, name=f"{cfg.kind}_lm")                # [B, T, V]


def export_copy(model: keras.Model, mode: str | None) -> keras.Model:
    """A copy of ``model`` whose fl_sim layers run in export mode ``mode``.

    Same architecture, layer names, weight paths and weight values (copied now; later
    changes to ``model`` do not reach the copy). ``model`` itself is not modified.
    """
    check_export_mode(mode)

    def clone(layer):
        config = layer.get_config()
        if "export_mode" in config:
            config["export_mode"] = mode
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def is_recurrent(model: keras.Model) -> bool:
    """True for models built by ``build_model`` with kind cifg or si_cifg."""
    return any(layer.name == "cifg" for layer in model.layers)


def initial_state(model: keras.Model, batch_size: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Zero ``(h [B, P or H], c [B, H])`` for :func:`make_step_fn`."""
    cell = model.get_layer("cifg").cell
    return (np.zeros((batch_size, cell.out_dim), np.float32),
            np.zeros((batch_size, cell.units), np.float32))


def make_step_fn(model: keras.Model, batch_size: int = 1):
    """One recurrent step with the model's own weights, as a fixed-signature ``tf.function``.

    ``step(token int32 [B], h float32 [B, P or H], c float32 [B, H])
    -> (logits [B, V], h_new, c_new)``. Running it over a sequence from
    :func:`initial_state` reproduces ``model(tokens)[:, t]`` at every t.
    Only for cifg / si_cifg (a transformer has no recurrent state; export its sequence
    model at fixed seq_len instead).
    """
    if not is_recurrent(model):
        raise ValueError(f"make_step_fn needs a cifg / si_cifg model, got {model.name!r}")
    embedding = model.get_layer("embedding")
    cell = model.get_layer("cifg").cell
    proj = model.get_layer("proj")
    out = model.get_layer("logits")

    @tf.function(input_signature=[
        tf.TensorSpec([batch_size], tf.int32, name="token"),
        tf.TensorSpec([batch_size, cell.out_dim], tf.float32, name="h"),
        tf.TensorSpec([batch_size, cell.units], tf.float32, name="c"),
    ])
    def step(token, h, c):
        x = embedding(token)                                         # [B, E]
        h, c = cell.recurrent_step(cell.input_projection(x), h, c)   # [B, P|H], [B, H]
        return out(proj(h)), h, c                                    # [B, V], ...

    return step


def serving_module(model: keras.Model, batch_size: int = 1) -> tf.Module:
    """A ``tf.Module`` for SavedModel / TFLite export, with the model's variables tracked.

    Attributes
    ----------
    sequence : tf.function
        ``sequence(tokens int32 [batch_size, T]) -> {"logits": [batch_size, T, V]}``.
    step : tf.function (cifg / si_cifg only)
        ``step(token [batch_size], h, c) -> {"logits": [batch_size, V], "h": ..., "c": ...}``,
        see :func:`make_step_fn`.
    variables_list : list of tf.Variable
        The model's variables, attached so TF tracking sees them.
    """
    mod = tf.Module(name=f"{model.name}_serving")
    mod.variables_list = [v.value for v in model.weights]
    seq_len = model.inputs[0].shape[1]

    @tf.function(input_signature=[tf.TensorSpec([batch_size, seq_len], tf.int32, name="tokens")])
    def sequence(tokens):
        return {"logits": model(tokens, training=False)}

    mod.sequence = sequence
    if is_recurrent(model):
        raw_step = make_step_fn(model, batch_size)

        @tf.function(input_signature=raw_step.input_signature)
        def step(token, h, c):
            logits, h, c = raw_step(token, h, c)
            return {"logits": logits, "h": h, "c": c}

        mod.step = step
    return mod
