"""``tf.Module``s exported to TFLite: inference (``sequence``, ``step``) and on-device training.

Inference module (:class:`InferenceModule`), batch 1, fixed shapes, no loop in any graph::

    sequence(tokens int32 [1, T])                 -> {"logits": float32 [1, T, V]}
    step(token int32 [1], h float32 [1, P or H], c float32 [1, H])      (cifg / si_cifg)
                                                  -> {"logits": [1, V], "h": ..., "c": ...}

``step`` is one recurrence of the same cell the sequence model unrolls (as
``fl_sim.models.make_step_fn``), so feeding a sentence token by token from zero state gives
the sequence model's logits at every position. Transformers have no ``step``: they have no
recurrent state to carry, and a KV-cache is not part of these models, so a keyboard runs
``sequence`` on the last T tokens at every keystroke.

``embedding="lookup"`` (the int4 format) writes the lookup as ``one_hot(token) @ table``
with ``tf.one_hot``, which the converter turns into one EMBEDDING_LOOKUP op.
``embedding="one_hot"`` (the sparse formats) computes the input embedding as
``one_hot(token) @ table`` (a FULLY_CONNECTED) instead of a gather: the TFLite converter
sparse-encodes only FULLY_CONNECTED / CONV weights, so this is what lets the (pruned)
embedding table be stored sparse. The one-hot vector is built with integer ops
(``1 - min(|token - id|, 1)``), see ``one_hot_embed`` for why not ``tf.one_hot``. The
result is bit-identical to the gather in float32.

Training module (:class:`TrainingModule`, float32, weights as resource variables), after
TF's "On-device training with TensorFlow Lite" guide::

    train(tokens int32 [B, T + 1], lr float32 [])  -> {"loss": float32 []}   one plain-SGD step
    infer(tokens int32 [1, T])                     -> {"logits": [1, T, V]}
    step(token, h, c)                              -> as above (cifg / si_cifg)
    get_weights()                                  -> {"w00_<name>": tensor, ...}
    set_weights(w00_<name>=..., ...)               -> {"num_assigned": int32 []}
    save(checkpoint_path string [])                -> {"checkpoint_path"}   (TF Save op: Flex)
    restore(checkpoint_path string [])             -> {"w00_<name>": tensor, ...} (Flex)

``train`` uses the clients' loss (``fl_sim.evaluation.masked_mean_loss``: mean
cross-entropy over non-PAD targets) and plain SGD, like ``clients/trainer.py``. Weight
names carry a two-digit index so that, sorted (TFLite sorts signature tensor names), they
are in ``model.trainable_variables`` order: the order of ``final_weights.npz`` and of the
updates the server aggregates.

Export modes: both modules trace a copy of the model in an export mode
(``fl_sim.models.export_copy``; what each mode changes is in ``fl_sim.models.export_mode``).
The inference module's copy uses an int8-friendly causal mask and a float16-safe guard in
the scale-invariant activations; the training module's copy uses ReLUs whose gradient lowers
to builtins (TF's ReluGrad has none), and the position table is added whole for
full-length sequences (no StridedSliceGrad). With these, every op of ``train``, ``infer``,
``step``, ``get_weights`` and ``set_weights`` is a builtin; only ``save`` / ``restore``
(TF's Save / Restore ops, as in the guide) need Flex.
"""

from __future__ import annotations

from pathlib import Path

import keras
import tensorflow as tf

from fl_sim.evaluation import masked_mean_loss
from fl_sim.models import export_copy, is_recurrent


def weight_names(model: keras.Model) -> list[str]:
    """Signature-safe names of the trainable weights, in order: ``w00_embedding_embeddings``."""
    width = max(2, len(str(len(model.trainable_variables) - 1)))
    return [f"w{i:0{width}d}_" + v.path.replace("/", "_")
            for i, v in enumerate(model.trainable_variables)]


def _chain(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers after the embedding (the models are a single chain)."""
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    if not layers or layers[0].name != "embedding":
        raise ValueError(f"{model.name}: expected the first layer to be 'embedding'")
    return layers[1:]


def _embed_fn(model: keras.Model, embedding: str):
    layer = model.get_layer("embedding")
    if embedding == "gather":
        return layer
    vocab = int(layer.input_dim)
    if embedding == "lookup":
        def lookup_embed(tokens):
            # The converter turns exactly this (tf.one_hot, then matmul) into one
            # EMBEDDING_LOOKUP, which ai-edge-quantizer can give int4 weights (a GATHER
            # it cannot); same values as the gather.
            return tf.matmul(tf.one_hot(tokens, vocab, dtype=tf.float32), layer.embeddings)

        return lookup_embed
    if embedding != "one_hot":
        raise ValueError(f"embedding must be 'gather', 'lookup' or 'one_hot', got {embedding!r}")

    def one_hot_embed(tokens):
        # one_hot = 1 - min(|token - id|, 1), in int32: neither tf.one_hot nor
        # cast(equal(...)), because the converter rewrites those (a) into EMBEDDING_LOOKUP
        # (which cannot be sparse-encoded) and (b) in int8 into a ONE_HOT op whose
        # off-value is quantized with the wrong zero point (every entry reads as 0.5).
        ids = tf.range(vocab, dtype=tf.int32)
        hot = 1 - tf.minimum(tf.abs(tokens[..., None] - ids), 1)           # [..., V] 0/1
        return tf.matmul(tf.cast(hot, tf.float32), layer.embeddings)       # [..., E]

    return one_hot_embed


def _forward(embed, chain, tokens):
    """tokens [B, T] -> logits [B, T, V] through the model's own layers (no dropout)."""
    x = embed(tokens)
    for layer in chain:
        x = layer(x)
    return x


class InferenceModule(tf.Module):
    """Fixed-shape ``sequence`` (and for cifg / si_cifg ``step``) functions, batch 1.

    Traced from ``export_copy(model, "inference")``; ``model`` itself is not modified.
    """

    def __init__(self, model: keras.Model, embedding: str = "gather"):
        super().__init__(name=f"{model.name}_inference")
        model = export_copy(model, "inference")
        self.model_variables = [v.value for v in model.weights]   # track Keras 3 variables
        seq_len = int(model.inputs[0].shape[1])
        embed = _embed_fn(model, embedding)
        chain = _chain(model)

        @tf.function(input_signature=[tf.TensorSpec([1, seq_len], tf.int32, name="tokens")])
        def sequence(tokens):
            return {"logits": _forward(embed, chain, tokens)}

        self.sequence = sequence
        self.signature_keys = ["sequence"]
        if is_recurrent(model):
            self.step = _make_step(model, embed)
            self.signature_keys = ["step", "sequence"]

    def signatures(self) -> dict:
        return {k: getattr(self, k).get_concrete_function() for k in self.signature_keys}


def _make_step(model: keras.Model, embed):
    cell = model.get_layer("cifg").cell
    proj, out = model.get_layer("proj"), model.get_layer("logits")

    @tf.function(input_signature=[
        tf.TensorSpec([1], tf.int32, name="token"),
        tf.TensorSpec([1, cell.out_dim], tf.float32, name="h"),
        tf.TensorSpec([1, cell.units], tf.float32, name="c"),
    ])
    def step(token, h, c):
        x = embed(token)                                             # [1, E]
        h, c = cell.recurrent_step(cell.input_projection(x), h, c)   # [1, P|H], [1, H]
        return {"logits": out(proj(h)), "h": h, "c": c}              # [1, V]

    return step


# ----------------------------------------------------------------------------- training


class TrainingModule(tf.Module):
    """On-device training signatures over the model's weights as resource variables.

    Traced from ``export_copy(model, "training")``: the signatures read and update the
    copy's variables (initialised to ``model``'s values), never ``model``'s.
    """

    def __init__(self, model: keras.Model, batch_size: int):
        super().__init__(name=f"{model.name}_training")
        model = export_copy(model, "training")
        self.model_variables = [v.value for v in model.weights]
        self.train_variables = [v.value for v in model.trainable_variables]
        names = weight_names(model)
        self.weight_names = names
        self.batch_size = int(batch_size)
        seq_len = int(model.inputs[0].shape[1])
        embed = _embed_fn(model, "gather")
        chain = _chain(model)
        tv = self.train_variables

        @tf.function(input_signature=[
            tf.TensorSpec([batch_size, seq_len + 1], tf.int32, name="tokens"),
            tf.TensorSpec([], tf.float32, name="lr")])
        def train(tokens, lr):
            with tf.GradientTape() as tape:
                logits = _forward(embed, chain, tokens[:, :-1])
                loss = masked_mean_loss(logits, tokens[:, 1:])
            grads = tape.gradient(loss, tv)
            for v, g in zip(tv, grads):
                v.assign_sub(lr * tf.convert_to_tensor(g))
            return {"loss": loss}

        @tf.function(input_signature=[tf.TensorSpec([1, seq_len], tf.int32, name="tokens")])
        def infer(tokens):
            return {"logits": _forward(embed, chain, tokens)}

        @tf.function(input_signature=[])
        def get_weights():
            return {n: v.read_value() for n, v in zip(names, tv)}

        @tf.function(input_signature=[tf.TensorSpec(v.shape, v.dtype, name=n)
                                      for n, v in zip(names, tv)])
        def set_weights(*values):
            for v, value in zip(tv, values):
                v.assign(value)
            return {"num_assigned": tf.constant(len(values), tf.int32)}

        @tf.function(input_signature=[tf.TensorSpec([], tf.string, name="checkpoint_path")])
        def save(checkpoint_path):
            tf.raw_ops.Save(filename=checkpoint_path, tensor_names=names,
                            data=[v.read_value() for v in tv], name="save")
            return {"checkpoint_path": checkpoint_path}

        @tf.function(input_signature=[tf.TensorSpec([], tf.string, name="checkpoint_path")])
        def restore(checkpoint_path):
            out = {}
            for n, v in zip(names, tv):
                restored = tf.raw_ops.Restore(file_pattern=checkpoint_path, tensor_name=n,
                                              dt=v.dtype, name="restore")
                v.assign(restored)
                out[n] = restored
            return out

        self.train, self.infer = train, infer
        self.get_weights, self.set_weights = get_weights, set_weights
        self.save, self.restore = save, restore
        self.signature_keys = ["train", "infer", "get_weights", "set_weights", "save", "restore"]
        if is_recurrent(model):
            self.step = _make_step(model, embed)
            self.signature_keys.insert(2, "step")

    def signatures(self) -> dict:
        return {k: getattr(self, k).get_concrete_function() for k in self.signature_keys}


#: Signatures of the training model that use TF (Flex) ops, not TFLite builtins.
FLEX_TRAINING_SIGNATURES = ("save", "restore")


def save_inference_model(model: keras.Model, directory: Path, embedding: str = "gather") -> list[str]:
    """Write a SavedModel with the inference signatures; return their keys."""
    mod = InferenceModule(model, embedding)
    tf.saved_model.save(mod, str(directory), signatures=mod.signatures())
    return list(mod.signature_keys)


def save_training_model(model: keras.Model, directory: Path, batch_size: int) -> list[str]:
    """Write a SavedModel with the training signatures (traced with builtin gradients)."""
    mod = TrainingModule(model, batch_size)
    tf.saved_model.save(mod, str(directory), signatures=mod.signatures())
    return list(mod.signature_keys)
