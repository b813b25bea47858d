"""CIFG and SI-CIFG recurrent cells (one step) and the sequence layer that unrolls them.

CIFG, the Coupled Input-Forget Gate LSTM (Greff et al. 2017, "LSTM: A Search Space
Odyssey"; the Gboard next-word model of Hard et al. 2018, "Federated Learning for Mobile
Keyboard Prediction"), one step with input x_t and state (h_{t-1}, c_{t-1}):

    f_t  = g(W_f x_t + U_f h_{t-1} + b_f)          forget gate
    i_t  = 1 - f_t                                  input gate, coupled to the forget gate
    c~_t = a(W_c x_t + U_c h_{t-1} + b_c)          candidate
    c_t  = f_t * c_{t-1} + i_t * c~_t
    o_t  = g(W_o x_t + U_o h_{t-1} + b_o)          output gate
    m_t  = o_t * a(c_t)
    h_t  = P m_t      if projection_dim > 0 (no bias, as in the TFF / Gboard CIFG), else m_t

CIFG:    g = sigmoid,    a = tanh.
SI-CIFG: g = si_sigmoid, a = si_tanh (``fl_sim.models.scale_invariant``; Ro et al. 2024,
arXiv:2403.08100). Every pre-activation is linear in (W, U, b) for a fixed h_{t-1}, and
h_0 = 0, so by induction over t the whole output sequence is unchanged when W, U and b are
multiplied by any alpha > 0. See ``scale_invariant.py`` for where these equations come from
(the paper text was not available; they follow a secondary description).

Weights: ``kernel`` W = [W_f | W_c | W_o] of shape [input_dim, 3*units], ``recurrent_kernel``
U = [U_f | U_c | U_o] of shape [out_dim, 3*units], ``bias`` [3*units] (forget part
initialised to ``forget_bias`` = 1.0, the rest 0), optional ``projection`` P [units, proj].
``out_dim`` is ``projection_dim`` if > 0 else ``units``. Initialisers: Glorot-uniform kernel,
orthogonal recurrent kernel, Glorot-uniform projection, each with a seed derived from the
layer's ``seed``.

Speed and TFLite: :class:`CIFG` computes the input part ``x @ W + b`` for all time steps in
one matmul, then unrolls the recurrence in a Python loop over the static sequence length,
so a ``tf.function`` graph has no While/TensorList ops and converts to TFLite builtins.
"""

from __future__ import annotations

import functools

import keras
import tensorflow as tf

from fl_sim.models.export_mode import check_export_mode, relu_for, tiny_for
from fl_sim.models.scale_invariant import si_sigmoid, si_tanh
# Initializer seeds come from the one derivation in fl_sim/seeding.py (31-bit ints for Keras).
from fl_sim.seeding import int_seed as derive_seed


@keras.saving.register_keras_serializable(package="fl_sim")
class CIFGCell(keras.layers.Layer):
    """One (SI-)CIFG step; also usable as a ``keras.layers.RNN`` cell.

    Parameters
    ----------
    units : int
        Cell (memory) size H.
    projection_dim : int
        Output projection size P (0 = no projection, output is H).
    scale_invariant : bool
        Use si_sigmoid / si_tanh instead of sigmoid / tanh (SI-CIFG).
    forget_bias : float
        Initial value of the forget-gate bias.
    seed : int
        Seed for the weight initialisers.
    export_mode : None, "inference" or "training"
        How the SI activations are traced for TFLite (``fl_sim.models.export_mode``).

    Notes
    -----
    Stepwise use (same weights as the sequence model)::

        xw = cell.input_projection(x_t)         # [B, 3H]
        h, c = cell.recurrent_step(xw, h, c)    # h: [B, out_dim], c: [B, H]

    or ``h, (h, c) = cell(x_t, (h, c))``.
    """

    def __init__(self, units: int, projection_dim: int = 0, scale_invariant: bool = False,
                 forget_bias: float = 1.0, seed: int = 0, export_mode: str | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.projection_dim = int(projection_dim)
        self.scale_invariant = bool(scale_invariant)
        self.forget_bias = float(forget_bias)
        self.seed = int(seed)
        self.export_mode = check_export_mode(export_mode)
        self.out_dim = self.projection_dim if self.projection_dim > 0 else self.units
        if self.scale_invariant:
            tiny = tiny_for(self.export_mode)
            self._gate = functools.partial(si_sigmoid, tiny=tiny, relu=relu_for(self.export_mode))
            self._act = functools.partial(si_tanh, tiny=tiny)
        else:
            self._gate, self._act = tf.sigmoid, tf.tanh

    # Keras RNN-cell protocol
    @property
    def state_size(self):
        return [self.out_dim, self.units]

    @property
    def output_size(self):
        return self.out_dim

    def build(self, input_shape):
        input_dim = int(input_shape[-1])
        u = self.units
        self.kernel = self.add_weight(
            name="kernel", shape=(input_dim, 3 * u),
            initializer=keras.initializers.GlorotUniform(seed=derive_seed(self.seed, "kernel")))
        self.recurrent_kernel = self.add_weight(
            name="recurrent_kernel", shape=(self.out_dim, 3 * u),
            initializer=keras.initializers.Orthogonal(
                seed=derive_seed(self.seed, "recurrent_kernel")))
        fb = self.forget_bias

        def bias_init(shape, dtype=None):
            # [b_f | b_c | b_o] = [forget_bias..., 0..., 0...]
            return tf.concat([tf.fill([u], fb), tf.zeros([2 * u])], 0)

        self.bias = self.add_weight(name="bias", shape=(3 * u,), initializer=bias_init)
        if self.projection_dim > 0:
            self.projection = self.add_weight(
                name="projection", shape=(u, self.projection_dim),
                initializer=keras.initializers.GlorotUniform(
                    seed=derive_seed(self.seed, "projection")))
        else:
            self.projection = None

    def input_projection(self, x: tf.Tensor) -> tf.Tensor:
        """``x @ W + b`` for any leading shape: [..., input_dim] -> [..., 3H]."""
        return keras.ops.matmul(x, self.kernel) + self.bias

    def recurrent_step(self, xw: tf.Tensor, h: tf.Tensor, c: tf.Tensor):
        """One step from the precomputed input part ``xw`` [B, 3H].

        Returns ``(h_t [B, out_dim], c_t [B, H])``.
        """
        z = xw + tf.matmul(h, self.recurrent_kernel)            # [B, 3H]
        z_f, z_c, z_o = tf.split(z, 3, axis=-1)                  # 3 x [B, H]
        f = self._gate(z_f)                                      # forget gate, i = 1 - f
        c_new = f * c + (1.0 - f) * self._act(z_c)               # [B, H]
        m = self._gate(z_o) * self._act(c_new)                   # [B, H]
        h_new = tf.matmul(m, self.projection) if self.projection is not None else m
        return h_new, c_new                                      # [B, out_dim], [B, H]

    def call(self, inputs, states, training=None):
        h, c = states
        h, c = self.recurrent_step(self.input_projection(inputs), h, c)
        return h, [h, c]

    def get_initial_state(self, batch_size=None):
        return [tf.zeros([batch_size, self.out_dim]), tf.zeros([batch_size, self.units])]

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, projection_dim=self.projection_dim,
                      scale_invariant=self.scale_invariant, forget_bias=self.forget_bias,
                      seed=self.seed, export_mode=self.export_mode)
        return config


@keras.saving.register_keras_serializable(package="fl_sim")
class CIFG(keras.layers.Layer):
    """(SI-)CIFG over a whole sequence: [B, T, D] -> [B, T, out_dim] (all steps' h_t).

    The recurrence is unrolled over the static T (no While ops). The state starts at zero
    unless ``initial_state=(h0, c0)`` is given; ``return_state=True`` also returns the final
    ``(h_T, c_T)``. There is no masking: sequences are right-padded and the loss ignores
    PAD targets, so PAD steps after a sequence's end never influence counted positions.
    The step cell is ``self.cell`` (a :class:`CIFGCell`).
    """

    def __init__(self, units: int, projection_dim: int = 0, scale_invariant: bool = False,
                 forget_bias: float = 1.0, seed: int = 0, export_mode: str | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        self.cell = CIFGCell(units, projection_dim=projection_dim,
                             scale_invariant=scale_invariant, forget_bias=forget_bias,
                             seed=seed, export_mode=export_mode, name="cell")

    def build(self, input_shape):
        self.cell.build((input_shape[0], input_shape[-1]))

    def call(self, inputs, initial_state=None, return_state=False):
        steps = inputs.shape[1]
        if steps is None:
            raise ValueError("CIFG needs a static sequence length (it unrolls over time)")
        xw = self.cell.input_projection(inputs)                  # [B, T, 3H], one matmul
        if initial_state is None:
            batch = tf.shape(inputs)[0]
            h = tf.zeros([batch, self.cell.out_dim], dtype=inputs.dtype)
            c = tf.zeros([batch, self.cell.units], dtype=inputs.dtype)
        else:
            h, c = initial_state
        outputs = []
        for xw_t in tf.unstack(xw, num=steps, axis=1):           # T x [B, 3H]
            h, c = self.cell.recurrent_step(xw_t, h, c)
            outputs.append(h)
        y = tf.stack(outputs, axis=1)                            # [B, T, out_dim]
        return (y, h, c) if return_state else y

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.cell.out_dim)

    def get_config(self):
        config = super().get_config()
        cell = self.cell
        config.update(units=cell.units, projection_dim=cell.projection_dim,
                      scale_invariant=cell.scale_invariant, forget_bias=cell.forget_bias,
                      seed=cell.seed, export_mode=cell.export_mode)
        return config
