"""fl_sim's recurrent LM written for pfl-research: tf_keras (Keras 2), pfl's Keras API.

pfl 0.6's ``TFModel`` drives a ``tf.keras`` model; with TensorFlow 2.21 that is the
``tf_keras`` package (Keras 2), since TF's own ``tf.keras`` is Keras 3 there. This module
rebuilds ``fl_sim.models.build_model``'s cifg / si_cifg model (fl_sim/models/lm.py and
cifg.py) in tf_keras, for benchmarks/bench_pfl.py:

    Embedding(V, E) -> CIFG(H, projection P) -> Dense(E) -> Dense(V)        (logits)

with the same CIFG equations, written independently here (fl_sim/models/cifg.py's
docstring has them and their sources):

    z = x_t W + b + h_{t-1} U,  [z_f | z_c | z_o] = split(z, 3)
    f = g(z_f);  c_t = f * c_{t-1} + (1 - f) * a(z_c);  m = g(z_o) * a(c_t);  h_t = m P

g, a = sigmoid, tanh (CIFG) or the scale-invariant ReLU(z)/max ReLU(z), z/max|z| (SI-CIFG).
Like fl_sim's layer it computes ``x W + b`` for all steps in one matmul and unrolls the
recurrence over the static sequence length, so both frameworks run the same graph of ops
and the benchmark compares the frameworks, not two RNN implementations.

The trainable variables come in fl_sim's order (embedding, kernel, recurrent kernel, bias,
projection, proj kernel and bias, logits kernel and bias) with the same shapes, so the
weights fl_sim exports can be loaded one to one (``set_weights``) and the forward pass
compared. TensorFlow is imported only inside the builders: this file imports (and
:func:`param_count` runs) in fl_sim's own venv, which has no tf_keras.
"""

from __future__ import annotations

PAD_ID = 0  # fl_sim.data.vocab.PAD_ID; padded targets are masked out of the loss
TINY = 1e-12  # fl_sim.models.scale_invariant.TINY: the guard of the SI denominators


def param_count(vocab_size: int, embedding_dim: int, hidden_dim: int, projection_dim: int) -> int:
    """Trainable parameters of the model :func:`build_model` makes (pure arithmetic)."""
    v, e, h, p = vocab_size, embedding_dim, hidden_dim, projection_dim
    out = p if p > 0 else h
    cifg = e * 3 * h + out * 3 * h + 3 * h + (h * p if p > 0 else 0)
    return v * e + cifg + (out * e + e) + (e * v + v)


def masked_mean_loss(targets, logits):
    """Mean cross-entropy over non-PAD targets, 0 for an all-PAD batch (as fl_sim's).

    Argument order (labels, predictions) is Keras's: pfl calls ``keras_model.loss``.
    """
    import tensorflow as tf

    targets = tf.cast(targets, tf.int32)
    mask = tf.cast(tf.not_equal(targets, PAD_ID), tf.float32)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)
    return tf.reduce_sum(ce * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


def _cifg_layer_class():
    import tensorflow as tf
    import tf_keras

    def si_sigmoid(z):
        r = tf.nn.relu(z)
        return r / tf.maximum(tf.reduce_max(r, axis=-1, keepdims=True), TINY)

    def si_tanh(z):
        return z / tf.maximum(tf.reduce_max(tf.abs(z), axis=-1, keepdims=True), TINY)

    class CIFG(tf_keras.layers.Layer):
        """[B, T, D] -> [B, T, P or H]: every step's h_t, from zero state."""

        def __init__(self, units, projection_dim=0, scale_invariant=False, **kwargs):
            super().__init__(**kwargs)
            self.units, self.projection_dim = int(units), int(projection_dim)
            self.scale_invariant = bool(scale_invariant)
            self.out_dim = self.projection_dim or self.units
            self._gate, self._act = (si_sigmoid, si_tanh) if scale_invariant else (tf.sigmoid, tf.tanh)

        def build(self, input_shape):
            u, d = self.units, int(input_shape[-1])
            self.kernel = self.add_weight("kernel", shape=(d, 3 * u), initializer="glorot_uniform")
            self.recurrent_kernel = self.add_weight("recurrent_kernel", shape=(self.out_dim, 3 * u),
                                                    initializer="orthogonal")
            # Forget-gate bias starts at 1 (fl_sim's forget_bias); the weights fl_sim exports
            # replace every initial value anyway.
            self.bias = self.add_weight(
                "bias", shape=(3 * u,),
                initializer=lambda shape, dtype=None: tf.concat([tf.ones([u]), tf.zeros([2 * u])], 0))
            self.projection = (self.add_weight("projection", shape=(u, self.projection_dim),
                                               initializer="glorot_uniform")
                               if self.projection_dim else None)
            super().build(input_shape)

        def call(self, inputs):
            steps = inputs.shape[1]
            xw = tf.matmul(inputs, self.kernel) + self.bias              # [B, T, 3H]
            batch = tf.shape(inputs)[0]
            h = tf.zeros([batch, self.out_dim], inputs.dtype)
            c = tf.zeros([batch, self.units], inputs.dtype)
            outputs = []
            for xw_t in tf.unstack(xw, num=steps, axis=1):
                z_f, z_c, z_o = tf.split(xw_t + tf.matmul(h, self.recurrent_kernel), 3, axis=-1)
                f = self._gate(z_f)
                c = f * c + (1.0 - f) * self._act(z_c)
                m = self._gate(z_o) * self._act(c)
                h = tf.matmul(m, self.projection) if self.projection is not None else m
                outputs.append(h)
            return tf.stack(outputs, axis=1)                             # [B, T, out_dim]

        def compute_output_shape(self, input_shape):
            return (*input_shape[:-1], self.out_dim)

    return CIFG


def build_model(vocab_size: int, seq_len: int, embedding_dim: int, hidden_dim: int,
                projection_dim: int, scale_invariant: bool, seed: int = 0):
    """The uncompiled tf_keras model: int32 [B, seq_len] -> float32 logits [B, seq_len, V]."""
    import tf_keras

    tf_keras.utils.set_random_seed(seed)  # initial values only; fl_sim's weights are loaded over them
    tokens = tf_keras.Input(shape=(seq_len,), dtype="int32", name="tokens")
    x = tf_keras.layers.Embedding(
        vocab_size, embedding_dim, name="embedding",
        embeddings_initializer=tf_keras.initializers.RandomUniform(-0.05, 0.05))(tokens)
    x = _cifg_layer_class()(hidden_dim, projection_dim, scale_invariant, name="cifg")(x)
    x = tf_keras.layers.Dense(embedding_dim, name="proj")(x)
    logits = tf_keras.layers.Dense(vocab_size, name="logits")(x)
    return tf_keras.Model(tokens, logits, name=("si_" if scale_invariant else "") + "cifg_lm")
