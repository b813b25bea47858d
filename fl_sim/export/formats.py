"""The export formats' names and one-line descriptions (no TensorFlow import, so the CLI's
argument checks and error paths stay fast). How each is converted: :mod:`fl_sim.export.convert`.
"""

FORMATS = ("float32", "float16", "dynamic_int8", "int8", "sparse", "sparse_int8")
SPARSE_FORMATS = ("sparse", "sparse_int8")
INT8_FORMATS = ("int8", "sparse_int8")

DESCRIPTIONS = {
    "float32": "float32 weights and math (reference)",
    "float16": "float16 weights, float32 math",
    "dynamic_int8": "dynamic-range: int8 weights, float activations",
    "int8": "full integer: int8 weights and activations (float interface)",
    "sparse": "pruned float32 weights in TFLite's sparse (CSR) encoding",
    "sparse_int8": "pruned int8 weights in sparse encoding, int8 activations",
}

#: (model kind, format) pairs that are known not to work, with the reason the report gives.
#: By default (no --formats) they are skipped and reported as unsupported; named explicitly
#: with --formats they are attempted, and a failure then fails the command.
UNSUPPORTED = {
    ("si_transformer", fmt): (
        "the SI attention divides ReLU scores by their row sum, which is 0 for a row with no "
        "positive score (common under the causal mask); in full-integer int8 that denominator "
        "quantizes to the zero point and TFLite's int8 DIV kernel refuses to run "
        "(div.cc: data[i] != zero_point). dynamic_int8 (int8 weights, float activations) works")
    for fmt in INT8_FORMATS
}
