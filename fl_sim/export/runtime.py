"""Does a .tflite file load and run in the LiteRT configurations an app uses?

``default_xnnpack``: ``Interpreter(model_path=...)`` / ``Interpreter(model_content=...)``
with nothing else set, i.e. ``OpResolverType.AUTO``, which applies the XNNPACK delegate
(as an Android ``org.tensorflow.lite.Interpreter(file)`` does). ``builtin_kernels``:
``OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES`` (Android:
``Interpreter.Options().setUseXNNPACK(false)``). A file "runs" in a configuration when
every signature allocates and invokes on zero inputs (zeros are valid tokens and state).
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from fl_sim.export.formats import RUNTIMES

_RESOLVER = {"default_xnnpack": None, "builtin_kernels": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}


def load_error(content: bytes, runtime: str) -> str | None:
    """Why ``content`` does not run every signature under ``runtime``, or None."""
    kwargs = {} if _RESOLVER[runtime] is None else {"experimental_op_resolver_type": _RESOLVER[runtime]}
    try:
        interp = Interpreter(model_content=content, **kwargs)
        for key in interp.get_signature_list():
            runner = interp.get_signature_runner(key)
            runner(**{n: np.zeros(d["shape"], d["dtype"]) for n, d in runner.get_input_details().items()})
    except Exception as exc:  # noqa: BLE001 - the interpreter raises RuntimeError / ValueError
        return " ".join(str(exc).split())[:400]
    return None


def runtime_support(content: bytes) -> dict:
    """``{runtime: "ok" | error}`` for every runtime of :data:`fl_sim.export.formats.RUNTIMES`."""
    return {rt: load_error(content, rt) or "ok" for rt in RUNTIMES}
