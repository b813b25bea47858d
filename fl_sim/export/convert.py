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
sparse         ``optimizations={EXPERIMENTAL_SPARSITY}`` on the pruned weights, one-hot
               embedding (see signatures.py) so the embedding is sparse-encoded too
sparse_int8    ``{DEFAULT, EXPERIMENTAL_SPARSITY}`` + representative dataset + INT8 ops
=============  ======================================================================

TFLite's sparse encoding (``DenseToSparse`` pass) applies to FULLY_CONNECTED / CONV
weights with at least 30% zeros. Unstructured (element-wise) sparsity is stored in CSR
form and expanded once by a DENSIFY op at the first invocation, so the sparse formats
save download and storage size; run-time memory and speed are those of a dense model
(TFLite's sparse FULLY_CONNECTED kernels need 1x4 (float) / 1x16 (int8) block sparsity,
which per-element magnitude pruning does not produce).

When strict int8 conversion fails for a model, the int8 formats fall back to
``TFLITE_BUILTINS`` (float kernels where no int8 kernel exists) and say so.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import tensorflow as tf

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
            if fmt == "sparse_int8":
                conv.optimizations.add(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
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
    info["convert_seconds"] = round(time.perf_counter() - t0, 2)
    return content, info


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
