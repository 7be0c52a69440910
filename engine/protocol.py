"""Latentforge wire protocol: frames, array buffers, message headers (see docs/protocol.md).

Standard library + numpy only, and only relative imports: the Blender add-on ships this
module unchanged next to ``errors.py`` and ``client.py``.

A frame is an 18-byte prefix (magic, version, header length, buffer length), a UTF-8
JSON header, and raw little-endian array buffers the header describes. The framing is
written here rather than taken from a library (msgpack, protobuf, Arrow IPC...) because
the add-on must ship with no third-party dependency besides numpy, and because the
format has to give zero-copy numpy views on receive and scatter-gather sends: a few
hundred lines of ``struct`` + ``json`` + ``np.frombuffer`` do that, and nothing is ever
unpickled or evaluated.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np

from .errors import InvalidRequest, LatentforgeError

# --------------------------------------------------------------------------- constants

MAGIC = b"LFRG"
PROTOCOL_VERSION = 1
PREFIX = struct.Struct("<4sHIQ")
PREFIX_SIZE = PREFIX.size  # 18
ALIGN = 8

MAX_HEADER_BYTES = 1 << 20
MAX_BUFFER_BYTES = 1 << 31
MAX_ARRAYS = 256
MAX_DIMS = 8
MAX_NAME_CHARS = 128
MAX_ID_CHARS = 128

DTYPES: dict[str, np.dtype] = {
    "u8": np.dtype("u1"),
    "i8": np.dtype("i1"),
    "u16": np.dtype("<u2"),
    "i16": np.dtype("<i2"),
    "u32": np.dtype("<u4"),
    "i32": np.dtype("<i4"),
    "u64": np.dtype("<u8"),
    "i64": np.dtype("<i8"),
    "f16": np.dtype("<f2"),
    "f32": np.dtype("<f4"),
    "f64": np.dtype("<f8"),
    "bool": np.dtype("?"),
}
_CODE_BY_KIND_SIZE = {(dt.kind, dt.itemsize): code for code, dt in DTYPES.items()}

# Mirrors engine/pipelines/base.py; duplicated because this module may not import engine.*.
TASKS = ("generate", "refine", "views", "populate", "interpolate")
RESULT_KINDS = ("mesh", "points", "images")
JOB_STATES = ("queued", "running", "finished", "failed", "cancelled")
FINAL_STATES = ("finished", "failed", "cancelled")

REQUEST_OPS = ("hello", "submit", "cancel", "subscribe", "jobs", "result", "models", "ping", "shutdown")
REPLY_OPS = ("welcome", "accepted", "ack", "jobs", "models", "pong")
EVENT_OPS = ("progress", "preview", "result", "error", "cancelled")
CONNECTION_STATES = ("connected", "lost", "reconnected", "closed", "failed")


# ------------------------------------------------------------------------------ errors

class ProtocolError(LatentforgeError):
    """A frame that breaks docs/protocol.md.

    ``fatal`` tells a reader whether the stream is out of sync (the connection must be
    closed) or whether the bad frame was consumed whole and the next one can be read.
    ``req_id`` is the offending frame's ``req_id`` when its header could be parsed.
    """

    code = "protocol.error"
    advice = "The add-on and the engine disagree on the protocol; install both from the same release."
    fatal = True

    def __init__(self, message: str, advice: str | None = None, *, code: str | None = None,
                 details: dict[str, Any] | None = None, req_id: Any = None) -> None:
        super().__init__(message, advice, code=code, details=details)
        self.req_id = req_id


class BadMagic(ProtocolError):
    """The stream does not start with ``LFRG``: not a Latentforge peer, or out of sync."""

    code = "protocol.bad_magic"
    advice = "Check that the address points to a Latentforge engine, not another service."


class VersionMismatch(ProtocolError):
    """The peer speaks another protocol version."""

    code = "protocol.version_mismatch"
    advice = ("The Blender add-on and the engine come from different releases; install both from "
              "the same release (or restart the engine after updating it).")


class HeaderTooLarge(ProtocolError):
    code = "protocol.header_too_large"
    advice = "Send fewer or smaller header fields; large data belongs in arrays."


class BufferTooLarge(ProtocolError):
    code = "protocol.buffer_too_large"
    advice = "Split the data over several requests or reduce its resolution (the limit is 2 GiB per frame)."


class Truncated(ProtocolError):
    code = "protocol.truncated"
    advice = "The connection dropped in the middle of a message; reconnect and retry."


class BadJson(ProtocolError):
    code = "protocol.bad_json"
    advice = "Headers must be strict UTF-8 JSON (no NaN or Infinity; send null instead)."
    fatal = False


class BadHeader(ProtocolError):
    code = "protocol.bad_header"
    advice = "A header must be a JSON object with a string 'op'; see docs/protocol.md."
    fatal = False


class BadArray(ProtocolError):
    code = "protocol.bad_array"
    advice = ("Arrays must use a supported dtype (u8..u64, i8..i64, f16, f32, f64, bool) and a "
              "descriptor whose shape, offset and byte count match the buffer.")
    fatal = False


class UnknownOp(ProtocolError):
    code = "protocol.unknown_op"
    advice = "The engine does not know this request; update the engine to the add-on's release."
    fatal = False


class AuthRequired(LatentforgeError):
    """A request arrived before ``hello`` was answered."""

    code = "auth.required"
    advice = "Send hello (with the token) first; the client does this on connect."


class AuthFailed(LatentforgeError):
    """The token in ``hello`` is missing or wrong."""

    code = "auth.failed"
    advice = ("Copy the token from the engine's token file (printed by `latentforge serve`) into "
              "the add-on preferences, or connect through the Unix socket.")


# ------------------------------------------------------------------------------ message

@dataclass
class Message:
    """One decoded frame: its JSON header and its arrays (views into the received buffer)."""

    header: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def op(self) -> str:
        return self.header.get("op", "")

    @property
    def req_id(self) -> Any:
        return self.header.get("req_id")

    @property
    def job_id(self) -> str | None:
        return self.header.get("job_id")

    def get(self, key: str, default: Any = None) -> Any:
        """A header field, or ``default``."""
        return self.header.get(key, default)


# ----------------------------------------------------------------------------- encoding

def dtype_code(dtype: np.dtype) -> str:
    """The protocol name of a numpy dtype, or raise ``BadArray`` if it cannot travel."""
    dt = np.dtype(dtype)
    code = _CODE_BY_KIND_SIZE.get((dt.kind, dt.itemsize)) if dt.fields is None else None
    if code is None or dt.subdtype is not None:
        raise BadArray(f"dtype {dt} cannot be sent; supported: {', '.join(DTYPES)}.")
    return code


def _as_wire_array(value: Any) -> np.ndarray:
    """C-contiguous little-endian array; a copy only when the input is not already so."""
    a = np.asarray(value)
    code = dtype_code(a.dtype)
    want = DTYPES[code]
    if a.dtype != want:  # byte order differs (same kind and size)
        a = a.astype(want)
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    return a


def json_default(obj: Any) -> Any:
    """``json.dumps`` ``default=`` hook used for headers: numpy scalars and arrays to Python.

    Numpy scalars and small arrays (e.g. a 4x4 transform) show up in meta all the time.
    """
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def encode_header(header: Mapping[str, Any]) -> bytes:
    """Strict UTF-8 JSON for a header, space-padded so the prefix + header is 8-byte aligned."""
    try:
        raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                         default=json_default).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise BadJson(f"Header cannot be encoded as strict JSON: {exc}.",
                      "Use only JSON types in headers (numbers, strings, lists, objects, null); "
                      "NaN and Infinity are not allowed.") from None
    pad = (-(PREFIX_SIZE + len(raw))) % ALIGN
    if pad:
        raw += b" " * pad
    if len(raw) > MAX_HEADER_BYTES:
        raise HeaderTooLarge(f"Header is {len(raw)} bytes; the limit is {MAX_HEADER_BYTES}.")
    return raw


def encode_frame(header: Mapping[str, Any], arrays: Mapping[str, Any] | None = None) -> list:
    """Encode one frame as a list of bytes-like pieces for ``socket.sendmsg`` / ``writelines``.

    The first piece is prefix + header; then each array's memory (a ``memoryview`` of the
    array itself when it is already C-contiguous little-endian, so nothing is copied),
    with zero padding to keep every offset 8-byte aligned. The pieces reference the
    arrays: do not modify them until the frame is sent.
    """
    if not isinstance(header, Mapping):
        raise BadHeader("A header must be a mapping.")
    op = header.get("op")
    if not isinstance(op, str) or not op:
        raise BadHeader("A header needs a non-empty string 'op'.")
    hdr = dict(header)
    hdr.pop("arrays", None)
    pieces: list = []
    if arrays:
        if len(arrays) > MAX_ARRAYS:
            raise BadArray(f"{len(arrays)} arrays in one frame; the limit is {MAX_ARRAYS}.")
        descs = []
        cursor = 0
        for name, value in arrays.items():
            if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_CHARS:
                raise BadArray(f"Array name {name!r} must be a string of 1-{MAX_NAME_CHARS} characters.")
            a = _as_wire_array(value)
            if a.ndim > MAX_DIMS:
                raise BadArray(f"Array {name!r} has {a.ndim} dimensions; the limit is {MAX_DIMS}.")
            descs.append({"name": name, "dtype": dtype_code(a.dtype), "shape": list(a.shape),
                          "offset": cursor, "nbytes": int(a.nbytes)})
            if a.nbytes:
                pieces.append(memoryview(a.reshape(-1).view(np.uint8)))
            cursor += a.nbytes
            pad = (-cursor) % ALIGN
            if pad:
                pieces.append(bytes(pad))
                cursor += pad
        hdr["arrays"] = descs
        buffer_len = cursor
    else:
        buffer_len = 0
    if buffer_len > MAX_BUFFER_BYTES:
        raise BufferTooLarge(f"Arrays total {buffer_len} bytes; the limit is {MAX_BUFFER_BYTES}.")
    raw = encode_header(hdr)
    pieces.insert(0, PREFIX.pack(MAGIC, PROTOCOL_VERSION, len(raw), buffer_len) + raw)
    return pieces


def frame_bytes(header: Mapping[str, Any], arrays: Mapping[str, Any] | None = None) -> bytes:
    """One frame as a single ``bytes`` object (copies; for small frames and tests)."""
    return b"".join(encode_frame(header, arrays))


# ----------------------------------------------------------------------------- decoding

def parse_prefix(data: bytes | bytearray | memoryview, *, max_header: int = MAX_HEADER_BYTES,
                 max_buffer: int = MAX_BUFFER_BYTES) -> tuple[int, int, int]:
    """Check an 18-byte prefix; return ``(version, header_len, buffer_len)``."""
    if len(data) < PREFIX_SIZE:
        raise Truncated(f"Frame prefix has {len(data)} of {PREFIX_SIZE} bytes.")
    magic, version, header_len, buffer_len = PREFIX.unpack_from(data, 0)
    if magic != MAGIC:
        raise BadMagic(f"Bad frame magic {bytes(magic)!r} (expected {MAGIC!r}).")
    if version != PROTOCOL_VERSION:
        raise VersionMismatch(f"Peer speaks protocol version {version}; this side speaks {PROTOCOL_VERSION}.",
                              details={"peer_version": version, "version": PROTOCOL_VERSION})
    if header_len > max_header:
        raise HeaderTooLarge(f"Header of {header_len} bytes is over the limit of {max_header}.")
    if buffer_len > max_buffer:
        raise BufferTooLarge(f"Buffer of {buffer_len} bytes is over the limit of {max_buffer}.")
    return version, header_len, buffer_len


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _check_id(value: Any, what: str, req_id: Any = None) -> None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return
    if isinstance(value, str) and len(value) <= MAX_ID_CHARS:
        return
    raise BadHeader(f"'{what}' must be an integer, a string of at most {MAX_ID_CHARS} characters, or null.",
                    req_id=req_id)


def decode_header(data: bytes | bytearray | memoryview) -> dict[str, Any]:
    """Parse a header section: strict UTF-8 JSON object with a string ``op``."""
    if len(data) < 2:
        raise BadHeader(f"Header of {len(data)} bytes is too short to be a JSON object.")
    try:
        text = bytes(data).decode("utf-8")
        header = json.loads(text, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadJson(f"Header is not valid UTF-8 JSON: {exc}.") from None
    if not isinstance(header, dict):
        raise BadHeader(f"Header is a JSON {type(header).__name__}, not an object.")
    req_id = header.get("req_id")
    _check_id(req_id, "req_id")
    op = header.get("op")
    if not isinstance(op, str) or not op:
        raise BadHeader("Header has no string 'op'.", req_id=req_id)
    arrays = header.get("arrays")
    if arrays is not None and not isinstance(arrays, list):
        raise BadHeader("'arrays' must be a list of array descriptors.", req_id=req_id)
    return header


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def decode_arrays(header: Mapping[str, Any], buffer: bytes | bytearray | memoryview) -> dict[str, np.ndarray]:
    """Zero-copy numpy views into ``buffer`` for the header's array descriptors, all checked."""
    req_id = header.get("req_id")
    descs = header.get("arrays") or []
    if not isinstance(descs, list):
        raise BadHeader("'arrays' must be a list of array descriptors.", req_id=req_id)
    if len(descs) > MAX_ARRAYS:
        raise BadArray(f"{len(descs)} arrays in one frame; the limit is {MAX_ARRAYS}.", req_id=req_id)
    size = memoryview(buffer).nbytes
    out: dict[str, np.ndarray] = {}
    prev_end = 0
    for i, d in enumerate(descs):
        if not isinstance(d, dict):
            raise BadArray(f"Array descriptor {i} is not an object.", req_id=req_id)
        name, code, shape = d.get("name"), d.get("dtype"), d.get("shape")
        offset, nbytes = d.get("offset"), d.get("nbytes")
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_CHARS:
            raise BadArray(f"Array descriptor {i} needs a 'name' of 1-{MAX_NAME_CHARS} characters.", req_id=req_id)
        if name in out:
            raise BadArray(f"Array name {name!r} appears twice.", req_id=req_id)
        dt = DTYPES.get(code) if isinstance(code, str) else None
        if dt is None:
            raise BadArray(f"Array {name!r} has unknown dtype {code!r}.", req_id=req_id)
        if (not isinstance(shape, list) or len(shape) > MAX_DIMS
                or not all(_is_int(s) and s >= 0 for s in shape)):
            raise BadArray(f"Array {name!r} needs a 'shape' of at most {MAX_DIMS} non-negative integers.",
                           req_id=req_id)
        if not _is_int(offset) or not _is_int(nbytes) or offset < 0 or nbytes < 0:
            raise BadArray(f"Array {name!r} needs non-negative integer 'offset' and 'nbytes'.", req_id=req_id)
        count = math.prod(shape)
        if count * dt.itemsize != nbytes:
            raise BadArray(f"Array {name!r}: shape {shape} of {code} needs {count * dt.itemsize} bytes, "
                           f"descriptor says {nbytes}.", req_id=req_id)
        if offset % ALIGN:
            raise BadArray(f"Array {name!r}: offset {offset} is not a multiple of {ALIGN}.", req_id=req_id)
        if offset < prev_end:
            raise BadArray(f"Array {name!r}: offset {offset} overlaps the previous array.", req_id=req_id)
        if offset + nbytes > size:
            raise BadArray(f"Array {name!r}: bytes {offset}..{offset + nbytes} lie outside the "
                           f"{size}-byte buffer.", req_id=req_id)
        if count:
            arr = np.frombuffer(buffer, dtype=dt, count=count, offset=offset).reshape(shape)
            if code == "bool" and np.any(arr.view(np.uint8) > 1):
                raise BadArray(f"Array {name!r}: bool bytes must be 0 or 1.", req_id=req_id)
        else:
            arr = np.empty(shape, dtype=dt)
        out[name] = arr
        prev_end = offset + nbytes
    return out


def _decode_sections(header_bytes: bytes | bytearray | memoryview,
                     buffer: bytes | bytearray | memoryview) -> Message:
    header = decode_header(header_bytes)
    return Message(header, decode_arrays(header, buffer))


def decode_frame(data: bytes | bytearray | memoryview) -> Message:
    """Decode one complete frame held in a single buffer (arrays are views into ``data``)."""
    mv = memoryview(data)
    _, header_len, buffer_len = parse_prefix(mv[:PREFIX_SIZE])
    end = PREFIX_SIZE + header_len + buffer_len
    if mv.nbytes < end:
        raise Truncated(f"Frame needs {end} bytes, got {mv.nbytes}.")
    if mv.nbytes > end:
        raise BadHeader(f"{mv.nbytes - end} bytes follow the end of the frame.")
    return _decode_sections(mv[PREFIX_SIZE:PREFIX_SIZE + header_len], mv[PREFIX_SIZE + header_len:end])


# ----------------------------------------------------------------------- socket helpers

_IOV_BATCH = 512  # below every platform's IOV_MAX (1024 on Linux/macOS)
# A peer that went away must give EPIPE, not kill the process: Blender may not ignore SIGPIPE.
_SEND_FLAGS = getattr(socket, "MSG_NOSIGNAL", 0)


def send_pieces(sock: socket.socket, pieces: Iterable) -> None:
    """Send byte pieces in order with scatter-gather I/O (``sendmsg``) where available."""
    views = [memoryview(p).cast("B") for p in pieces]
    views = [v for v in views if v.nbytes]
    if not hasattr(sock, "sendmsg"):
        for v in views:
            sock.sendall(v)
        return
    i = 0
    while i < len(views):
        sent = sock.sendmsg(views[i:i + _IOV_BATCH], (), _SEND_FLAGS)
        while sent:
            n = views[i].nbytes
            if sent >= n:
                sent -= n
                i += 1
            else:
                views[i] = views[i][sent:]
                sent = 0


def send_message(sock: socket.socket, header: Mapping[str, Any], arrays: Mapping[str, Any] | None = None) -> None:
    """Encode and send one frame on a blocking socket (callers serialize concurrent sends)."""
    send_pieces(sock, encode_frame(header, arrays))


def _recv_into(sock: socket.socket, buf: bytearray | memoryview, started: bool) -> bool:
    """Fill ``buf``; False on a clean EOF before the first byte when ``started`` is False."""
    mv = memoryview(buf)
    got = 0
    total = mv.nbytes
    while got < total:
        n = sock.recv_into(mv[got:], min(total - got, 1 << 24))
        if n == 0:
            if got == 0 and not started:
                return False
            raise Truncated(f"Connection closed inside a frame ({got} of {total} bytes of a section).")
        got += n
    return True


def read_message(sock: socket.socket, *, max_header: int = MAX_HEADER_BYTES,
                 max_buffer: int = MAX_BUFFER_BYTES) -> Message | None:
    """Read one frame from a blocking socket; ``None`` on a clean end of stream.

    The whole frame is read before its header is parsed, so a non-fatal
    ``ProtocolError`` leaves the stream at the next frame. The array section is
    received into one preallocated uint8 buffer; the arrays are writeable views into it.
    """
    prefix = bytearray(PREFIX_SIZE)
    if not _recv_into(sock, prefix, started=False):
        return None
    _, header_len, buffer_len = parse_prefix(prefix, max_header=max_header, max_buffer=max_buffer)
    header_bytes = bytearray(header_len)
    _recv_into(sock, header_bytes, started=True)
    # np.empty, not bytearray(n): zero-filling a large buffer before receiving into it
    # costs as much as the transfer itself (measured by scripts/bench_protocol.py).
    buffer = np.empty(buffer_len, dtype=np.uint8)
    if buffer_len:
        _recv_into(sock, buffer, started=True)
    return _decode_sections(header_bytes, buffer)


async def read_message_async(reader: asyncio.StreamReader, *, max_header: int = MAX_HEADER_BYTES,
                             max_buffer: int = MAX_BUFFER_BYTES) -> Message | None:
    """Read one frame from an asyncio stream; ``None`` on a clean end of stream.

    Same guarantees as ``read_message``; arrays are read-only views into the received bytes.
    """
    try:
        prefix = await reader.readexactly(PREFIX_SIZE)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise Truncated(f"Connection closed inside a frame prefix ({len(exc.partial)} bytes).") from None
    _, header_len, buffer_len = parse_prefix(prefix, max_header=max_header, max_buffer=max_buffer)
    try:
        header_bytes = await reader.readexactly(header_len)
        buffer = await reader.readexactly(buffer_len) if buffer_len else b""
    except asyncio.IncompleteReadError as exc:
        raise Truncated(f"Connection closed inside a frame ({len(exc.partial)} of {exc.expected} bytes "
                        "of a section).") from None
    return _decode_sections(header_bytes, buffer)


async def write_message_async(writer: asyncio.StreamWriter, header: Mapping[str, Any],
                              arrays: Mapping[str, Any] | None = None, *, drain: bool = True) -> None:
    """Encode one frame, write its pieces and (by default) wait for the writer to drain."""
    for piece in encode_frame(header, arrays):
        writer.write(piece)
    if drain:
        await writer.drain()


# ---------------------------------------------------------------------- header builders
# One function per request and event so both sides use the same field names.

def hello_request(req_id: Any, *, token: str | None = None, client: str = "latentforge",
                  version: int = PROTOCOL_VERSION) -> dict[str, Any]:
    """``hello``: the first request on every connection."""
    return {"op": "hello", "req_id": req_id, "version": version, "token": token, "client": client}


def check_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A job spec with defaults filled in (``params`` {}, ``priority`` 0), or ``InvalidRequest``."""
    if not isinstance(spec, Mapping):
        raise InvalidRequest("A job spec must be an object with task, model, params and priority.")
    task = spec.get("task")
    if task not in TASKS:
        raise InvalidRequest(f"Unknown task {task!r}; choose one of {', '.join(TASKS)}.")
    model = spec.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("The job spec needs a 'model' name.",
                             "Run `latentforge models` to see the installed models.")
    params = spec.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise InvalidRequest("The job spec's 'params' must be an object.")
    priority = spec.get("priority", 0)
    if priority is None:
        priority = 0
    if not _is_int(priority):
        raise InvalidRequest("The job spec's 'priority' must be an integer.")
    out = dict(spec)
    out.update(task=task, model=model, params=dict(params), priority=priority)
    return out


def submit_request(req_id: Any, spec: Mapping[str, Any]) -> dict[str, Any]:
    """``submit``: queue a job. Arrays the spec needs go in the same frame."""
    return {"op": "submit", "req_id": req_id, "spec": check_spec(spec)}


def cancel_request(req_id: Any, job_id: str) -> dict[str, Any]:
    return {"op": "cancel", "req_id": req_id, "job_id": job_id}


def subscribe_request(req_id: Any, job_id: str) -> dict[str, Any]:
    return {"op": "subscribe", "req_id": req_id, "job_id": job_id}


def jobs_request(req_id: Any, limit: int = 50, state: Iterable[str] | None = None) -> dict[str, Any]:
    return {"op": "jobs", "req_id": req_id, "limit": int(limit), "state": None if state is None else list(state)}


def result_request(req_id: Any, job_id: str) -> dict[str, Any]:
    return {"op": "result", "req_id": req_id, "job_id": job_id}


def models_request(req_id: Any) -> dict[str, Any]:
    return {"op": "models", "req_id": req_id}


def ping_request(req_id: Any) -> dict[str, Any]:
    return {"op": "ping", "req_id": req_id}


def shutdown_request(req_id: Any) -> dict[str, Any]:
    return {"op": "shutdown", "req_id": req_id}


def welcome_reply(req_id: Any, *, server: str, device: str, models: list[dict[str, Any]],
                  version: int = PROTOCOL_VERSION) -> dict[str, Any]:
    """``welcome``: the answer to a good ``hello``."""
    return {"op": "welcome", "req_id": req_id, "version": version, "server": server, "device": device,
            "models": list(models),
            "limits": {"max_header_bytes": MAX_HEADER_BYTES, "max_buffer_bytes": MAX_BUFFER_BYTES}}


def accepted_reply(req_id: Any, job_id: str, position: int) -> dict[str, Any]:
    return {"op": "accepted", "req_id": req_id, "job_id": job_id, "position": int(position)}


def ack_reply(req_id: Any, job_id: str | None, state: str) -> dict[str, Any]:
    return {"op": "ack", "req_id": req_id, "job_id": job_id, "state": state}


def jobs_reply(req_id: Any, jobs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"op": "jobs", "req_id": req_id, "jobs": list(jobs)}


def models_reply(req_id: Any, device: str, models: list[dict[str, Any]]) -> dict[str, Any]:
    return {"op": "models", "req_id": req_id, "device": device, "models": list(models)}


def pong_reply(req_id: Any, server_time: float | None = None) -> dict[str, Any]:
    return {"op": "pong", "req_id": req_id, "time": time.time() if server_time is None else float(server_time)}


def progress_event(job_id: str, stage: str, step: int, total: int, *, eta_s: float | None = None,
                   elapsed_s: float = 0.0, req_id: Any = None) -> dict[str, Any]:
    return {"op": "progress", "req_id": req_id, "job_id": job_id, "stage": stage, "step": int(step),
            "total": int(total), "eta_s": None if eta_s is None else float(eta_s), "elapsed_s": float(elapsed_s)}


def preview_event(job_id: str, kind: str, step: int, total: int, meta: Mapping[str, Any] | None = None,
                  req_id: Any = None) -> dict[str, Any]:
    """``preview`` header; send it with the preview's arrays."""
    return {"op": "preview", "req_id": req_id, "job_id": job_id, "kind": kind, "step": int(step),
            "total": int(total), "meta": dict(meta or {})}


def result_event(job_id: str, index: int, count: int, kind: str, *, model: str, prompt: str | None = None,
                 seed: int | None = None, transform: Any = None, meta: Mapping[str, Any] | None = None,
                 final: bool | None = None, req_id: Any = None) -> dict[str, Any]:
    """``result`` header; send it with the result's arrays. ``final`` defaults to the last index."""
    if transform is not None:
        transform = np.asarray(transform, dtype=np.float64).reshape(4, 4).tolist()
    return {"op": "result", "req_id": req_id, "job_id": job_id, "index": int(index), "count": int(count),
            "kind": kind, "model": model, "prompt": prompt, "seed": None if seed is None else int(seed),
            "transform": transform, "meta": dict(meta or {}),
            "final": bool(index == count - 1 if final is None else final)}


def error_event(error: LatentforgeError | Mapping[str, Any], *, job_id: str | None = None,
                req_id: Any = None) -> dict[str, Any]:
    """``error`` header from a ``LatentforgeError`` (or its ``to_dict()``)."""
    d = error.to_dict() if isinstance(error, LatentforgeError) else dict(error)
    if req_id is None and isinstance(error, ProtocolError):
        req_id = error.req_id
    return {"op": "error", "req_id": req_id, "job_id": job_id, "code": str(d.get("code", "internal")),
            "message": str(d.get("message", "")), "advice": str(d.get("advice") or ""),
            "details": dict(d.get("details") or {})}


def cancelled_event(job_id: str, req_id: Any = None) -> dict[str, Any]:
    return {"op": "cancelled", "req_id": req_id, "job_id": job_id}


def connection_event(state: str, address: str, error: LatentforgeError | None = None) -> dict[str, Any]:
    """Client-local ``connection`` event (never sent on the wire)."""
    return {"op": "connection", "req_id": None, "state": state, "address": address,
            "error": None if error is None else error.to_dict()}


# ------------------------------------------------------------------- request validation

def _need(header: Mapping[str, Any], key: str, kind: type | tuple, what: str) -> Any:
    value = header.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise InvalidRequest(f"'{header.get('op')}' needs '{key}' ({what}).")
    return value


def validate_request(header: Mapping[str, Any]) -> None:
    """Check a decoded request's op and fields (server side).

    Raises ``UnknownOp`` for an op that is not a request, ``InvalidRequest`` for a field
    missing or of the wrong type.
    """
    op = header.get("op")
    if op not in REQUEST_OPS:
        raise UnknownOp(f"Unknown request {op!r}; requests are {', '.join(REQUEST_OPS)}.",
                        req_id=header.get("req_id"))
    if op == "hello":
        _need(header, "version", int, "an integer protocol version")
        token = header.get("token")
        if token is not None and not isinstance(token, str):
            raise InvalidRequest("'hello' field 'token' must be a string or null.")
        client = header.get("client", "")
        if not isinstance(client, str):
            raise InvalidRequest("'hello' field 'client' must be a string.")
    elif op == "submit":
        check_spec(header.get("spec"))
    elif op in ("cancel", "subscribe", "result"):
        job_id = _need(header, "job_id", str, "a job id string")
        if not job_id or len(job_id) > MAX_ID_CHARS:
            raise InvalidRequest(f"'{op}' needs a job id of 1-{MAX_ID_CHARS} characters.")
    elif op == "jobs":
        limit = header.get("limit", 50)
        if not _is_int(limit) or not 1 <= limit <= 1000:
            raise InvalidRequest("'jobs' field 'limit' must be an integer from 1 to 1000.")
        state = header.get("state")
        if state is not None and (not isinstance(state, list) or any(s not in JOB_STATES for s in state)):
            raise InvalidRequest(f"'jobs' field 'state' must be null or a list of {', '.join(JOB_STATES)}.")


# --------------------------------------------------------------------- errors from wire

def _error_classes() -> dict[str, type[LatentforgeError]]:
    found: dict[str, type[LatentforgeError]] = {}
    stack = [LatentforgeError]
    while stack:
        cls = stack.pop()
        found.setdefault(cls.code, cls)
        stack.extend(cls.__subclasses__())
    return found


def error_from_header(header: Mapping[str, Any]) -> LatentforgeError:
    """Rebuild the error an ``error`` event describes, as its own class when the code is known."""
    code = str(header.get("code") or "internal")
    message = str(header.get("message") or "")
    advice = str(header.get("advice") or "")
    details = dict(header.get("details") or {})
    if header.get("job_id") is not None:
        details.setdefault("job_id", header.get("job_id"))
    cls = _error_classes().get(code, LatentforgeError)
    try:
        return cls(message, advice, code=code, details=details)
    except TypeError:  # a subclass with its own constructor signature
        return LatentforgeError(message, advice, code=code, details=details)
