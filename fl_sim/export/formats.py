"""The export formats' names and one-line descriptions (no TensorFlow import, so the CLI's
argument checks and error paths stay fast). How each is converted: :mod:`fl_sim.export.convert`.
"""

FORMATS = ("float32", "float16", "dynamic_int8", "int8", "int4", "sparse", "sparse_int8")
#: Formats made from the pruned weights.
SPARSE_FORMATS = ("sparse", "sparse_int8")
#: Formats with int8 activations (calibrated on training-client text).
INT8_FORMATS = ("int8", "sparse_int8")

DESCRIPTIONS = {
    "float32": "float32 weights and math (reference)",
    "float16": "float16 weights, float32 math",
    "dynamic_int8": "dynamic-range: int8 weights, float activations",
    "int8": "full integer: int8 weights and activations (float interface)",
    "int4": "weight-only int4 (ai-edge-quantizer): int4 weights, embedding as EMBEDDING_LOOKUP, "
            "float32 math",
    "sparse": "pruned float32 weights in TFLite's sparse (CSR) encoding",
    "sparse_int8": "pruned weights, full integer int8, stored dense (XNNPACK cannot run TFLite's "
                   "sparse encoding of int8 filters): the zeros shrink the compressed download",
}

#: What every inference file is checked to load and run with (every signature), and what
#: metadata.json / the report state per file: LiteRT's defaults (the XNNPACK delegate, what
#: ``Interpreter(model_path=...)`` and an Android ``Interpreter(file)`` use) and builtin
#: kernels with the default delegates off. A format whose file fails either is reported as
#: failed and not written.
RUNTIMES = ("default_xnnpack", "builtin_kernels")

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
