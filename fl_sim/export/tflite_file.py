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


def _index_vector_bytes(vec_type, vec) -> int:
    values = getattr(vec, "values", None)
    return 0 if values is None else int(np.asarray(values).nbytes)


#: QuantizationParameters' vectors: (vtable offset, bytes per element): min, max, scale
#: (float32), zero_point (int64), in schema order.
_QUANT_VECTORS = ((4, 4), (6, 4), (8, 4), (10, 8))


def size_breakdown(content: bytes, top: int = 8) -> dict:
    """Where a file's bytes go, read from the flatbuffer itself.

    Tables and vectors are counted once per place they are stored (a table or vector
    referenced from several tensors, as after :func:`fl_sim.export.compact.compact`,
    counts once):

    * ``constant_bytes``: tensor data (weights, biases, constants), by dtype in
      ``constant_bytes_by_dtype``;
    * ``quantization_bytes``: per-tensor / per-channel scales (float32) and zero points
      (int64, as the schema stores them), ``quantization_tables`` distinct tables;
    * ``sparse_index_bytes``: the sparse encoding's segment and index arrays;
    * ``metadata_bytes``: the converter's metadata buffers;
    * ``other_bytes``: the rest: operators, tensor tables, names, signatures, padding.

    ``largest``: the ``top`` largest constants: tensor name, dtype, shape, bytes, the
    signatures that use the buffer (``shared`` when more than one), and its quantization.
    """
    model = schema.Model.GetRootAs(content, 0)
    sig_of = {}
    for i in range(model.SignatureDefsLength()):
        sd = model.SignatureDefs(i)
        sig_of[sd.SubgraphIndex()] = sd.SignatureKey().decode()
    users: dict[int, list] = {}
    quant_seen: dict[int, int] = {}        # vector position -> bytes
    quant_tables: set[int] = set()
    sparse_seen: dict[int, int] = {}
    for gi in range(model.SubgraphsLength()):
        graph = model.Subgraphs(gi)
        for ti in range(graph.TensorsLength()):
            t = graph.Tensors(ti)
            users.setdefault(t.Buffer(), []).append((sig_of.get(gi, f"subgraph {gi}"), t))
            q = t.Quantization()
            if q is not None and q._tab.Pos not in quant_tables:
                quant_tables.add(q._tab.Pos)
                for field, itemsize in _QUANT_VECTORS:
                    o = q._tab.Offset(field)
                    if o:
                        quant_seen.setdefault(q._tab.Vector(o), itemsize * q._tab.VectorLen(o))
            s = t.Sparsity()
            if s is not None and s._tab.Pos not in sparse_seen:
                st = schema.SparsityParametersT.InitFromObj(s)
                sparse_seen[s._tab.Pos] = sum(
                    _index_vector_bytes(d.arraySegmentsType, d.arraySegments)
                    + _index_vector_bytes(d.arrayIndicesType, d.arrayIndices) for d in st.dimMetadata or [])
    metadata_buffers = {model.Metadata(i).Buffer() for i in range(model.MetadataLength())}
    constant = metadata = 0
    by_dtype: dict[str, int] = {}
    rows = []
    for bi in range(model.BuffersLength()):
        buf = model.Buffers(bi)
        n = buf.DataLength() or (buf.Size() if buf.Offset() > 1 else 0)
        if not n:
            continue
        if bi in metadata_buffers:
            metadata += n
            continue
        constant += n
        tensors = users.get(bi, [])
        if not tensors:
            continue
        sig, t = tensors[0]
        dtype = _TYPE_NAMES.get(t.Type(), str(t.Type()))
        by_dtype[dtype] = by_dtype.get(dtype, 0) + n
        q = t.Quantization()
        qdesc = None
        if q is not None and q.ScaleLength():
            qdesc = ("per-tensor" if q.ScaleLength() == 1 else f"per-channel ({q.ScaleLength()})")
        sigs = sorted({s for s, _ in tensors})
        rows.append({"tensor": t.Name().decode(), "dtype": dtype,
                     "shape": [int(d) for d in t.ShapeAsNumpy()] if t.ShapeLength() else [],
                     "bytes": int(n), "signatures": sigs, "shared": len(sigs) > 1,
                     "sparse": t.Sparsity() is not None, "quantization": qdesc})
    rows.sort(key=lambda r: -r["bytes"])
    quant = sum(quant_seen.values())
    index = sum(sparse_seen.values())
    return {
        "file_bytes": len(content), "constant_bytes": constant,
        "constant_bytes_by_dtype": dict(sorted(by_dtype.items(), key=lambda kv: -kv[1])),
        "quantization_bytes": quant, "quantization_tables": len(quant_tables),
        "sparse_index_bytes": index, "metadata_bytes": metadata,
        "other_bytes": len(content) - constant - quant - index - metadata,
        "largest": rows[:top],
    }


def compressed_sizes(content: bytes) -> dict:
    """gzip -9 size (what a compressed download or an APK's deflate would carry)."""
    import gzip

    return {"gzip_bytes": len(gzip.compress(content, compresslevel=9, mtime=0))}
