"""TFLite conversion of one model into the six export formats and the training model.

Every format is converted from a SavedModel of :class:`fl_sim.export.signatures.InferenceModule`
(``from_saved_model`` with explicit signature keys, so the file's signatures are named
``step`` / ``sequence``), with weights frozen into constants and TFLite builtin ops only:

=============  ======================================================================
format         converter settings
=============  ======================================================================
float32        none (the reference for every comparison)
float16        ``optimizations={DEFAULT}``, ``supported_types=[float16]``: weights
               stored as float16, dequantized to float32 at load; float32 math
dynamic_int8   ``optimizations={DEFAULT}``, no representative data: dynamic-range
               quantization, int8 weights (tensors of >= 1024 elements), float
               activations quantized on the fly inside hybrid kernels
int8           ``optimizations={DEFAULT}`` + representative dataset of training-client
               sequences, ``supported_ops=[TFLITE_BUILTINS_INT8]``: full-integer
               weights and activations; the interface (token int32, h/c/logits
               float32) is kept, with QUANTIZE/DEQUANTIZE at the boundary
int4           the float32 file of the ``lookup``-embedding module (the embedding as an
               EMBEDDING_LOOKUP, which ai-edge-quantizer's int4 policy covers; a
               GATHER it does not), quantized by ai-edge-quantizer 0.10 weight-only:
               int4 channelwise asymmetric weights for FULLY_CONNECTED and
               EMBEDDING_LOOKUP, DEQUANTIZE'd to float32 once at the first run
sparse         ``optimizations={EXPERIMENTAL_SPARSITY}`` on the pruned weights, one-hot
               embedding (see signatures.py) so the embedding is sparse-encoded too
sparse_int8    as int8, on the pruned weights, without EXPERIMENTAL_SPARSITY (below)
=============  ======================================================================

Every file is then rewritten by :func:`fl_sim.export.compact.compact_checked` (each
quantization table, sparse index table, constant and vector stored once, not once per
signature and tensor; outputs checked bit-identical).

TFLite's sparse encoding (``DenseToSparse`` pass) applies to FULLY_CONNECTED / CONV
weights with at least 30% zeros. Unstructured (element-wise) sparsity is stored in CSR
form and expanded once by a DENSIFY op at the first invocation, so the sparse formats
save download and storage size; run-time memory and speed are those of a dense model
(TFLite's sparse FULLY_CONNECTED kernels need 1x4 (float) / 1x16 (int8) block sparsity,
which per-element magnitude pruning does not produce).

sparse_int8 is stored dense: with TFLite's sparse encoding of int8 filters (``{DEFAULT,
EXPERIMENTAL_SPARSITY}``) the file does not load in LiteRT's default configuration:
ai-edge-litert 2.3's XNNPACK delegate fails to prepare the int8 FULLY_CONNECTED nodes whose
filter comes from a DENSIFY ("failed to delegate FULLY_CONNECTED node #9 ... Node number 277
(TfLiteXNNPackDelegate) failed to prepare"), and storing the refused filters dense until it
loads ends with every filter dense. Measured on the demo SI-CIFG at 80% sparsity: that
sparse-encoded int8 file is 0.29x float32 after compaction (index arrays of 1-2 bytes per
stored value, the one-hot embedding needing 16-bit indices), builtin kernels only.

When strict int8 conversion fails for a model, the int8 formats fall back to
``TFLITE_BUILTINS`` (float kernels where no int8 kernel exists) and say so.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import tensorflow as tf

from fl_sim.export.compact import compact_checked
from fl_sim.export.formats import FORMATS, INT8_FORMATS

RepresentativeData = Callable[[], Iterable[tuple[str, dict]]]


class ConversionError(RuntimeError):
    pass


@contextlib.contextmanager
def quiet_native_stderr():
    """Silence the converter's C++ (absl) log lines, which ignore TF_CPP_MIN_LOG_LEVEL.

    They are dozens of lines per format and would bury the export's own progress. The
    redirect is of file descriptor 2 for the duration of one conversion only; errors still
    reach the user as Python exceptions (ConversionError quotes them). FL_SIM_EXPORT_VERBOSE=1
    keeps them.
    """
    if os.environ.get("FL_SIM_EXPORT_VERBOSE") == "1":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def convert_format(saved_model_dir: Path, signature_keys: list[str], fmt: str,
                   representative: RepresentativeData | None = None) -> tuple[bytes, dict]:
    """Convert one format; return ``(flatbuffer bytes, info)``.

    ``info`` has ``convert_seconds`` and, for the int8 formats, ``int8_ops``
    (``"strict"`` or ``"fallback"``) and the fallback's reason.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")

    def converter(strict_int8: bool = False) -> tf.lite.TFLiteConverter:
        conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir),
                                                        signature_keys=signature_keys)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if fmt == "float16":
            conv.optimizations = {tf.lite.Optimize.DEFAULT}
            conv.target_spec.supported_types = [tf.float16]
        elif fmt == "dynamic_int8":
            conv.optimizations = {tf.lite.Optimize.DEFAULT}
        elif fmt == "sparse":
            conv.optimizations = {tf.lite.Optimize.EXPERIMENTAL_SPARSITY}
        elif fmt in INT8_FORMATS:
            if representative is None:
                raise ValueError(f"{fmt} needs a representative dataset")
            conv.optimizations = {tf.lite.Optimize.DEFAULT}
            conv.representative_dataset = representative
            if strict_int8:
                conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        return conv

    t0 = time.perf_counter()
    info: dict = {}
    try:
        with quiet_native_stderr():
            if fmt in INT8_FORMATS:
                try:
                    content = converter(strict_int8=True).convert()
                    info["int8_ops"] = "strict"
                except Exception as exc:  # noqa: BLE001 - the converter raises many types
                    info["int8_ops"] = "fallback"
                    info["int8_fallback_reason"] = _short(exc)
                    content = converter().convert()
            else:
                content = converter().convert()
    except Exception as exc:  # noqa: BLE001
        raise ConversionError(f"{fmt}: TFLite conversion failed: {_short(exc)}") from exc
    if fmt == "int4":
        content = quantize_int4(content)
    info["converter_bytes"] = len(content)
    content, stats = compact_checked(content)
    info["compaction"] = stats
    info["convert_seconds"] = round(time.perf_counter() - t0, 2)
    return content, info


#: ai-edge-quantizer operations given int4 weights in the ``int4`` format.
INT4_OPS = ("FULLY_CONNECTED", "EMBEDDING_LOOKUP")


def quantize_int4(float_content: bytes) -> bytes:
    """Weight-only int4 (channelwise, asymmetric) of a float32 .tflite with ai-edge-quantizer.

    Asymmetric: each output channel's 16 levels span [min(w, 0), max(w, 0)] with a zero
    point, rather than 15 levels over [-max|w|, max|w|]. Measured on the demo SI-CIFG (100
    held-out sequences): accuracy drop vs float32 0.001 asymmetric, 0.009 symmetric, top-1
    agreement 0.98 vs 0.93; on the test suite's tiny SI-Transformer symmetric lost 0.047.
    The non-zero zero points cost 0.015x float32 of file size (0.194x instead of 0.179x).
    """
    from ai_edge_quantizer import qtyping, quantizer

    try:
        q = quantizer.Quantizer(bytearray(float_content))
        for op in INT4_OPS:
            q.update_quantization_recipe(
                regex=".*", operation_name=getattr(qtyping.TFLOperationName, op),
                op_config=qtyping.OpQuantizationConfig(
                    weight_tensor_config=qtyping.TensorQuantizationConfig(
                        num_bits=4, symmetric=False, granularity=qtyping.QuantGranularity.CHANNELWISE),
                    compute_precision=qtyping.ComputePrecision.FLOAT, explicit_dequantize=True))
        with quiet_native_stderr(), contextlib.redirect_stdout(io.StringIO()):
            result = q.quantize()
    except Exception as exc:  # noqa: BLE001 - the quantizer raises many types
        raise ConversionError(f"int4: ai-edge-quantizer failed: {_short(exc)}") from exc
    return bytes(result.quantized_model)


def convert_training(saved_model_dir: Path, signature_keys: list[str]) -> tuple[bytes, dict]:
    """The on-device training model: resource variables, builtins + Flex (save/restore)."""
    t0 = time.perf_counter()
    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir), signature_keys=signature_keys)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    conv.experimental_enable_resource_variables = True
    try:
        with quiet_native_stderr():
            content = conv.convert()
    except Exception as exc:  # noqa: BLE001
        raise ConversionError(f"training model: TFLite conversion failed: {_short(exc)}") from exc
    return content, {"convert_seconds": round(time.perf_counter() - t0, 2)}


def _short(exc: BaseException, limit: int = 600) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + " ..."
