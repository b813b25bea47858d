"""Keras language models: CIFG, SI-CIFG, Transformer and SI-Transformer.

``build_model(cfg, vocab_size, seq_len, seed)`` is the entry point; ``make_step_fn`` and
``initial_state`` run the recurrent models one token at a time with the same weights;
``serving_module`` packages fixed-shape functions for SavedModel / TFLite export.
"""

from fl_sim.models.cifg import CIFG, CIFGCell, derive_seed
from fl_sim.models.lm import (build_model, export_copy, initial_state, is_recurrent,
                              make_step_fn, serving_module)
from fl_sim.models.scale_invariant import si_normalize, si_sigmoid, si_tanh
from fl_sim.models.transformer import CausalSelfAttention, PositionEmbedding, TransformerBlock

__all__ = [
    "build_model", "export_copy", "make_step_fn", "initial_state", "is_recurrent", "serving_module",
    "derive_seed",
    "CIFG", "CIFGCell", "CausalSelfAttention", "PositionEmbedding", "TransformerBlock",
    "si_sigmoid", "si_tanh", "si_normalize",
]
