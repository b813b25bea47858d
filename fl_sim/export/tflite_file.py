"""Read a .tflite flatbuffer: signatures, ops, weight storage and the sparse encoding.

Parsed with the flatbuffer schema shipped in ``ai_edge_litert`` (``schema_py_generated``),
so what the report says about a file (how many weights are stored sparse, in which
dtype, which ops each signature needs, whether any needs the Flex delegate) is read from
the file itself, not assumed from the converter options.
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as schema

_OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
_TYPE_NAMES = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
_ITEMSIZE = {"FLOAT32": 4, "FLOAT16": 2, "INT32": 4, "UINT8": 1, "INT64": 8, "INT16": 2,
             "INT8": 1, "FLOAT64": 8, "BOOL": 1, "UINT16": 2, "UINT32": 4, "INT4": 0.5}


def _op_name(model, op) -> str:
    code = model.operatorCodes[op.opcodeIndex]
    num = max(code.builtinCode, code.deprecatedBuiltinCode)
    name = _OP_NAMES.get(num, str(num))
    if name == "CUSTOM":
        return (code.customCode or b"?").decode()
    return name


def _index_bytes(arr) -> int:
    if arr is None or getattr(arr, "values", None) is None:
        return 0
    return int(np.asarray(arr.values).nbytes)


def inspect_tflite(content: bytes) -> dict:
    """Summary of a .tflite file.

    Returns
    -------
    dict
        ``size_bytes``; ``signatures``: key -> {``ops``: {op: count}, ``flex_ops``: [...],
        ``inputs``/``outputs`` names}; ``weights``: constant tensors with at least 2
        dimensions (each buffer counted once): ``parameters`` (dense element count),
        ``stored_bytes`` by dtype, ``by_dtype`` parameter counts; ``sparse``: the
        sparse-encoded tensors (name, shape, dtype, stored values, index bytes, block map)
        and ``sparse_fraction_of_weights`` (share of weight parameters in sparse tensors)
        and ``encoded_sparsity`` (1 - stored / dense elements over those tensors);
        ``densify_ops``: DENSIFY ops (weights expanded to dense once, at the first run).
    """
    model = schema.ModelT.InitFromPackedBuf(content, 0)
    sig_of = {sd.subgraphIndex: sd for sd in (model.signatureDefs or [])}
    signatures: dict[str, dict] = {}
    seen_buffers: set[int] = set()
    weights = {"parameters": 0, "stored_bytes": 0, "by_dtype": {}}
    sparse: list[dict] = []
    densify = 0
    for gi, graph in enumerate(model.subgraphs):
        ops: dict[str, int] = {}
        for op in graph.operators or []:
            name = _op_name(model, op)
            ops[name] = ops.get(name, 0) + 1
        densify += ops.get("DENSIFY", 0)
        if gi in sig_of:
            sd = sig_of[gi]
            signatures[sd.signatureKey.decode()] = {
                "subgraph": gi,
                "ops": dict(sorted(ops.items())),
                "flex_ops": sorted(k for k in ops if k.startswith("Flex")),
                "inputs": [t.name.decode() for t in sd.inputs or []],
                "outputs": [t.name.decode() for t in sd.outputs or []],
            }
        for t in graph.tensors or []:
            buf = model.buffers[t.buffer] if t.buffer < len(model.buffers) else None
            data = None if buf is None else buf.data
            if data is None or len(data) == 0 or t.buffer in seen_buffers:
                continue
            shape = [] if t.shape is None else [int(d) for d in t.shape]
            if len(shape) < 2:
                continue
            seen_buffers.add(t.buffer)
            dtype = _TYPE_NAMES.get(t.type, str(t.type))
            dense = int(np.prod(shape))
            weights["parameters"] += dense
            weights["stored_bytes"] += len(data)
            weights["by_dtype"][dtype] = weights["by_dtype"].get(dtype, 0) + dense
            if t.sparsity is not None:
                itemsize = _ITEMSIZE.get(dtype, 1)
                stored = int(len(data) / itemsize)
                dims = t.sparsity.dimMetadata or []
                index = sum(_index_bytes(d.arraySegments) + _index_bytes(d.arrayIndices) for d in dims)
                block_map = [int(b) for b in (t.sparsity.blockMap if t.sparsity.blockMap is not None else [])]
                block_size = [int(d.denseSize) for d in dims[len(shape):]]
                # A block wider than (or not dividing) its dimension: observed with int8
                # tensors narrower than 16, where the converter's 1x16 blocks give wrong weights.
                mismatch = any(shape[m] % b for m, b in zip(block_map, block_size) if b)
                sparse.append({
                    "name": t.name.decode(), "shape": shape, "dtype": dtype,
                    "dense_elements": dense, "stored_values": stored,
                    "value_bytes": len(data), "index_bytes": index,
                    "block_map": block_map, "block_size": block_size, "block_mismatch": bool(mismatch),
                    "sparsity": 1.0 - stored / dense if dense else 0.0,
                })
    sparse_dense = sum(s["dense_elements"] for s in sparse)
    sparse_stored = sum(s["stored_values"] for s in sparse)
    return {
        "size_bytes": len(content),
        "signatures": signatures,
        "weights": weights,
        "sparse": {
            "tensors": sparse,
            "num_tensors": len(sparse),
            "sparse_fraction_of_weights": sparse_dense / weights["parameters"] if weights["parameters"] else 0.0,
            "encoded_sparsity": 1.0 - sparse_stored / sparse_dense if sparse_dense else 0.0,
            "index_bytes": sum(s["index_bytes"] for s in sparse),
            "block_encoded": [s["name"] for s in sparse if s["block_size"]],
            "block_mismatch": [s["name"] for s in sparse if s["block_mismatch"]],
        },
        "densify_ops": densify,
    }
