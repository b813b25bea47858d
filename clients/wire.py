"""Framing for the warm trainer's Unix socket: a JSON header, then raw array bytes.

One frame is ``<8-byte big-endian header length><JSON header><array bytes...>``; the header
lists each array's dtype and shape, so arrays travel as their own bytes (no pickle: a peer
can send data, never code) and arrive bit for bit. JSON keeps Python ints as ints and
floats as their shortest round-trip repr, so metrics come back exactly as they were.
"""

from __future__ import annotations

import json
import socket
import struct

import numpy as np

_LEN = struct.Struct(">Q")
#: A header larger than this is a protocol error, not a message (headers carry ids and metrics).
MAX_HEADER = 64 << 20


class WireError(ConnectionError):
    """The peer closed the connection or sent something that is not a frame."""


def send_frame(sock: socket.socket, header: dict, arrays: list[np.ndarray] = ()) -> None:
    arrays = [np.ascontiguousarray(a) for a in arrays]
    head = dict(header, _arrays=[[a.dtype.str, list(a.shape)] for a in arrays])
    raw = json.dumps(head).encode()
    sock.sendall(_LEN.pack(len(raw)) + raw)
    for a in arrays:
        if a.nbytes:
            sock.sendall(memoryview(a).cast("B"))


def _recv_exact(sock: socket.socket, n: int) -> bytearray:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise WireError(f"connection closed after {got} of {n} bytes")
        got += k
    return buf


def recv_frame(sock: socket.socket) -> tuple[dict, list[np.ndarray]]:
    (n,) = _LEN.unpack(_recv_exact(sock, _LEN.size))
    if n > MAX_HEADER:
        raise WireError(f"frame header of {n} bytes (more than {MAX_HEADER})")
    try:
        header = json.loads(_recv_exact(sock, n))
        specs = header.pop("_arrays")
        arrays = []
        for dtype, shape in specs:
            dt = np.dtype(dtype)
            if dt.hasobject:
                raise WireError(f"object arrays are not accepted ({dtype})")
            count = int(np.prod(shape, dtype=np.int64))
            arrays.append(np.frombuffer(_recv_exact(sock, count * dt.itemsize), dtype=dt)
                          .reshape(shape))
    except (ValueError, TypeError, KeyError) as exc:
        raise WireError(f"malformed frame: {exc}") from None
    return header, arrays
