"""Rewrite a converted .tflite flatbuffer without the bytes the converter wastes.

The TFLite converter shares a constant's *data* between the ``step`` and ``sequence``
signatures, but every tensor that uses it gets its own copy of the tensor's quantization
parameters (per-channel scales and int64 zero points: 12 bytes per output channel, 60 KB
for the 5,004-word output layer, once per signature and once more for each DENSIFY
output) and of its sparse-encoding index arrays (128 KB for a pruned embedding). It also
gives every tensor its own (empty) buffer entry. :func:`compact` writes the same model
with each distinct quantization table, sparsity table and constant buffer stored once and
referenced from every tensor that uses it (a flatbuffer table may be referenced from any
number of places; the interpreter reads it through the reference), each distinct numeric
vector (zero points, scales, shapes) written once, every empty buffer
mapped to buffer 0 (the schema's empty sentinel), and constant data 16-byte aligned as
the converter writes it. Nothing the interpreter computes changes: :func:`compact_checked`
(what the export uses) runs every signature of both files on the same inputs and refuses
a rewrite whose outputs are not bit-identical.

Read and written with ``ai_edge_litert``'s own flatbuffer object API and
``ai_edge_litert.tools.flatbuffer_utils``.
"""

from __future__ import annotations

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.tools import flatbuffer_utils

_ALIGN = 16
_FILE_IDENTIFIER = b"TFL3"      # the schema's file_identifier


def _bytes(x) -> bytes:
    return b"" if x is None else np.ascontiguousarray(x).tobytes()


def _quant_key(q) -> tuple | None:
    if q is None:
        return None
    if q.details is not None:   # custom quantization: never shared
        return ("custom", id(q))
    return (_bytes(q.scale), _bytes(q.zeroPoint), _bytes(q.min), _bytes(q.max),
            int(q.quantizedDimension), str(np.asarray(q.zeroPoint).dtype) if q.zeroPoint is not None else "")


def _index_key(vec_type, vec) -> tuple:
    return (int(vec_type), _bytes(getattr(vec, "values", None)) if vec is not None else b"")


def _sparsity_key(s) -> tuple | None:
    if s is None:
        return None
    dims = tuple((int(d.format), int(d.denseSize), _index_key(d.arraySegmentsType, d.arraySegments),
                  _index_key(d.arrayIndicesType, d.arrayIndices)) for d in (s.dimMetadata or []))
    return (_bytes(s.traversalOrder), _bytes(s.blockMap), dims)


def _packed_once(obj):
    """Make ``obj`` (an object-API table) serialize once per builder and reuse the offset."""
    base = type(obj)

    class Shared(base):
        def Pack(self, builder):
            cached = getattr(self, "_fl_sim_offset", None)
            if cached is not None and cached[0] is builder:
                return cached[1]
            off = base.Pack(self, builder)
            self._fl_sim_offset = (builder, off)
            return off

    obj.__class__ = Shared
    return obj


class _AlignedBuffer(schema.BufferT):
    """A constant buffer whose data starts on a 16-byte boundary (as the converter writes it)."""

    def Pack(self, builder):
        data = None
        if self.data is not None and len(self.data):
            payload = np.ascontiguousarray(self.data, dtype=np.uint8).tobytes()
            builder.StartVector(1, len(payload), _ALIGN)
            builder.head -= len(payload)
            builder.Bytes[builder.head:builder.head + len(payload)] = payload
            builder.vectorNumElems = len(payload)
            data = builder.EndVector()
        schema.BufferStart(builder)
        if data is not None:
            schema.BufferAddData(builder, data)
        schema.BufferAddOffset(builder, self.offset)
        schema.BufferAddSize(builder, self.size)
        return schema.BufferEnd(builder)


def _inline_buffers(model, content: bytes) -> None:
    """Move buffers stored after the flatbuffer (``offset``/``size``, as ai-edge-quantizer
    writes them) into the flatbuffer, so that they can be shared and re-serialized."""
    for buf in model.buffers:
        if (buf.offset or 0) > 1:
            buf.data = np.frombuffer(content[buf.offset:buf.offset + buf.size], np.uint8)
            buf.offset = buf.size = 0


def _compact_model(model) -> dict:
    """Share quantization / sparsity tables and buffers in ``model`` (in place); return counts."""
    quant: dict = {}
    sparsity: dict = {}
    by_content: dict[bytes, int] = {}
    remap: dict[int, int] = {}
    stats = {"tensors": 0, "quantization_tables": 0, "sparsity_tables": 0}
    for i, buf in enumerate(model.buffers):
        data = _bytes(buf.data) if buf.data is not None else b""
        remap[i] = by_content.setdefault(data, i) if data else 0
    for graph in model.subgraphs:
        for t in graph.tensors or []:
            stats["tensors"] += 1
            t.buffer = remap.get(t.buffer, t.buffer)
            k = _quant_key(t.quantization)
            if k is not None:
                if k not in quant:
                    quant[k] = _packed_once(t.quantization)
                t.quantization = quant[k]
            k = _sparsity_key(t.sparsity)
            if k is not None:
                if k not in sparsity:
                    sparsity[k] = _packed_once(t.sparsity)
                t.sparsity = sparsity[k]
    stats["quantization_tables"], stats["sparsity_tables"] = len(quant), len(sparsity)
    # Drop buffers nothing refers to any more; buffer 0 stays the empty sentinel.
    used = {0}
    for graph in model.subgraphs:
        used.update(t.buffer for t in graph.tensors or [])
    used.update(md.buffer for md in model.metadata or [])
    order = sorted(used)
    new_index = {old: new for new, old in enumerate(order)}
    buffers = []
    for old in order:
        b = model.buffers[old]
        nb = _AlignedBuffer()
        nb.data = None if old == 0 else b.data
        nb.offset, nb.size = b.offset, b.size
        buffers.append(nb)
    model.buffers = buffers
    for graph in model.subgraphs:
        for t in graph.tensors or []:
            t.buffer = new_index[t.buffer]
    for md in model.metadata or []:
        md.buffer = new_index[md.buffer]
    stats["buffers"] = len(buffers)
    return stats


class _SharingBuilder(flatbuffers.Builder):
    """A flatbuffer builder that writes each distinct numeric vector once and reuses it.

    The object API writes every vector through ``CreateNumpyVector``: zero points (all
    zeros for symmetric quantization: one 5,004-long int64 vector is 40 KB), scales,
    tensor shapes. Vectors are immutable in a flatbuffer, so identical ones can be one.
    """

    __slots__ = ("_vectors",)

    def __init__(self, initial_size: int = 1024):
        super().__init__(initial_size)
        self._vectors: dict[tuple, int] = {}

    def CreateNumpyVector(self, x):  # noqa: N802 - the flatbuffers API's name
        key = (x.dtype.str, x.shape, x.tobytes())
        if key not in self._vectors:
            self._vectors[key] = super().CreateNumpyVector(x)
        return self._vectors[key]


def compact(content: bytes) -> tuple[bytes, dict]:
    """``content`` with shared quantization / sparsity tables and buffers (see module doc)."""
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    _inline_buffers(model, content)
    stats = _compact_model(model)
    builder = _SharingBuilder()
    builder.Finish(model.Pack(builder), file_identifier=_FILE_IDENTIFIER)
    out = bytes(builder.Output())
    stats.update(bytes_before=len(content), bytes_after=len(out))
    return out, stats


def _outputs(content: bytes, rng_seed: int = 0) -> dict:
    """Every signature's outputs on fixed inputs (ids 0/1, which every vocabulary has;
    normal floats), with builtin kernels (deterministic)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_content=content,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    rng = np.random.default_rng(rng_seed)
    out = {}
    for key in sorted(interp.get_signature_list()):
        runner = interp.get_signature_runner(key)
        inputs = {}
        for name, d in sorted(runner.get_input_details().items()):
            dtype = np.dtype(d["dtype"])
            inputs[name] = (rng.integers(0, 2, d["shape"]).astype(dtype) if dtype.kind in "iu"
                            else rng.normal(0, 0.5, d["shape"]).astype(dtype))
        out[key] = runner(**inputs)
    return out


def compact_checked(content: bytes) -> tuple[bytes, dict]:
    """:func:`compact`, verified: raises ValueError unless both files compute the same bits.

    A converted file that does not run itself (e.g. an int8 DIV by its zero point) is
    returned as it is, with ``stats["skipped"]`` saying why: there is nothing to check the
    rewrite against, and running the file later reports the real error.
    """
    try:
        before = _outputs(content)
    except Exception as exc:  # noqa: BLE001 - the interpreter raises RuntimeError / ValueError
        return content, {"skipped": "the converted file does not run: " + " ".join(str(exc).split())[:200]}
    out, stats = compact(content)
    after = _outputs(out)
    for key, values in before.items():
        for name, value in values.items():
            if not np.array_equal(value, after[key][name]):
                raise ValueError(f"compaction changed signature {key!r} output {name!r}")
    return out, stats
