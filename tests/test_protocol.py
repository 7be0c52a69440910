"""Wire protocol: round trips of every message and dtype, and every malformed-frame error."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading

import numpy as np
import pytest

from engine import protocol as P
from engine.errors import InvalidRequest, LatentforgeError, ModelUnavailable


def _roundtrip(header, arrays=None):
    return P.decode_frame(P.frame_bytes(header, arrays))


def _raw_frame(header_bytes: bytes, buffer: bytes = b"", *, magic=P.MAGIC, version=P.PROTOCOL_VERSION,
               header_len=None, buffer_len=None) -> bytes:
    hl = len(header_bytes) if header_len is None else header_len
    bl = len(buffer) if buffer_len is None else buffer_len
    return struct.pack("<4sHIQ", magic, version, hl, bl) + header_bytes + buffer


def _header_with(arrays_desc, op="ping") -> bytes:
    return json.dumps({"op": op, "req_id": 7, "arrays": arrays_desc}).encode()


REQUESTS = [
    P.hello_request(1, token="abc", client="test 1.0"),
    P.submit_request(2, {"task": "generate", "model": "procedural", "params": {"category": "chair", "count": 2},
                         "priority": 3}),
    P.cancel_request(3, "job-1"),
    P.subscribe_request("s-4", "job-1"),
    P.jobs_request(5, limit=10, state=["finished", "failed"]),
    P.result_request(6, "job-1"),
    P.models_request(7),
    P.ping_request(8),
    P.shutdown_request(9),
]
REPLIES_AND_EVENTS = [
    P.welcome_reply(1, server="latentforge 0.1.0", device="cpu",
                    models=[{"name": "procedural", "available": True, "kinds": ["mesh"]}]),
    P.accepted_reply(2, "job-1", 0),
    P.ack_reply(3, "job-1", "running"),
    P.jobs_reply(5, [{"job_id": "job-1", "state": "finished", "spec": {}, "created": 1.5, "started": None,
                      "finished": None, "error": None, "n_results": 1}]),
    P.models_reply(7, "cpu", [{"name": "procedural", "available": True, "reason": "", "kinds": ["mesh"],
                               "tasks": ["generate"]}]),
    P.pong_reply(8, 123.25),
    P.progress_event("job-1", "denoise", 3, 25, eta_s=1.5, elapsed_s=0.25),
    P.preview_event("job-1", "points", 3, 25, meta={"note": "x0"}),
    P.result_event("job-1", 0, 2, "mesh", model="procedural", prompt="a chair", seed=4, transform=np.eye(4),
                   meta={"category": "chair"}),
    P.error_event(ModelUnavailable("No model 'x'."), job_id="job-2", req_id=2),
    P.cancelled_event("job-1"),
]
ALL_MESSAGES = REQUESTS + REPLIES_AND_EVENTS


@pytest.mark.parametrize("header", ALL_MESSAGES, ids=[h["op"] + str(i) for i, h in enumerate(ALL_MESSAGES)])
def test_every_message_round_trips(header):
    arrays = None
    if header["op"] in ("preview", "result", "submit"):
        arrays = {"points": np.random.default_rng(0).standard_normal((17, 3)).astype(np.float32),
                  "faces": np.arange(30, dtype=np.int32).reshape(10, 3)}
    msg = _roundtrip(header, arrays)
    expected = dict(header)
    got = dict(msg.header)
    got.pop("arrays", None)
    assert got == json.loads(json.dumps(expected))
    assert msg.op == header["op"]
    assert msg.req_id == header.get("req_id")
    if arrays:
        assert set(msg.arrays) == set(arrays)
        for k, v in arrays.items():
            np.testing.assert_array_equal(msg.arrays[k], v)
            assert msg.arrays[k].dtype == v.dtype
    # Every request builder yields a header the server-side validation accepts.
    if any(header is r for r in REQUESTS):
        P.validate_request(msg.header)


def test_result_final_defaults_to_last_index():
    assert P.result_event("j", 0, 2, "mesh", model="m")["final"] is False
    assert P.result_event("j", 1, 2, "mesh", model="m")["final"] is True


@pytest.mark.parametrize("code", list(P.DTYPES))
@pytest.mark.parametrize("shape", [(), (0,), (5,), (3, 0, 2), (2, 3, 4), (1, 1, 1, 1, 1, 1, 1, 2)])
def test_every_dtype_and_shape_round_trips(code, shape):
    dt = P.DTYPES[code]
    rng = np.random.default_rng(1)
    if dt.kind == "b":
        a = rng.integers(0, 2, size=shape).astype(bool)
    elif dt.kind == "f":
        a = rng.standard_normal(size=shape).astype(dt)
    else:
        info = np.iinfo(dt)
        a = rng.integers(info.min, info.max, size=shape, dtype=dt, endpoint=True)
    msg = _roundtrip(P.ping_request(1), {"a": a, "tail": np.arange(3, dtype=np.uint8)})
    out = msg.arrays["a"]
    assert out.dtype == dt and out.shape == shape
    np.testing.assert_array_equal(out, a)
    np.testing.assert_array_equal(msg.arrays["tail"], [0, 1, 2])


def test_descriptors_are_aligned_and_buffer_padded():
    pieces = P.encode_frame(P.ping_request(1), {"a": np.zeros(3, np.uint8), "b": np.ones(5, np.float64)})
    data = b"".join(pieces)
    _, hl, bl = P.parse_prefix(data)
    assert (P.PREFIX_SIZE + hl) % 8 == 0 and bl % 8 == 0
    descs = P.decode_header(data[P.PREFIX_SIZE:P.PREFIX_SIZE + hl])["arrays"]
    assert [d["offset"] for d in descs] == [0, 8]


def test_big_endian_and_non_contiguous_inputs_are_converted():
    be = np.arange(12, dtype=">f4").reshape(3, 4)
    strided = np.arange(20, dtype=np.int64).reshape(4, 5)[:, ::2]
    fortran = np.asfortranarray(np.arange(6, dtype=np.int16).reshape(2, 3))
    msg = _roundtrip(P.ping_request(1), {"be": be, "strided": strided, "fortran": fortran})
    assert msg.arrays["be"].dtype == np.dtype("<f4")
    np.testing.assert_array_equal(msg.arrays["be"], be)
    np.testing.assert_array_equal(msg.arrays["strided"], strided)
    np.testing.assert_array_equal(msg.arrays["fortran"], fortran)


def test_contiguous_arrays_are_sent_without_copy():
    a = np.arange(1000, dtype=np.float32)
    pieces = P.encode_frame(P.ping_request(1), {"a": a})
    view = pieces[1]
    assert isinstance(view, memoryview)
    assert np.shares_memory(np.frombuffer(view, dtype=np.uint8), a)


def test_received_arrays_are_views_into_the_buffer():
    data = bytearray(P.frame_bytes(P.ping_request(1), {"a": np.arange(4, dtype=np.int32)}))
    msg = P.decode_frame(data)
    assert np.shares_memory(msg.arrays["a"], np.frombuffer(data, dtype=np.uint8))
    assert msg.arrays["a"].flags.writeable


@pytest.mark.parametrize("value", [np.array(["a"]), np.array([object()]), np.array([1j]),
                                   np.zeros(2, dtype=[("x", "f4")])])
def test_unsendable_dtypes_are_refused(value):
    with pytest.raises(P.BadArray) as exc:
        P.encode_frame(P.ping_request(1), {"a": value})
    assert exc.value.code == "protocol.bad_array"


def test_encoding_nan_or_objects_in_header_is_refused():
    with pytest.raises(P.BadJson):
        P.frame_bytes({"op": "ping", "x": float("nan")})
    with pytest.raises(P.BadJson):
        P.frame_bytes({"op": "ping", "x": object()})
    # numpy scalars and small arrays are converted, not refused
    msg = _roundtrip({"op": "ping", "n": np.int64(3), "f": np.float32(0.5), "m": np.eye(2)})
    assert msg.header["n"] == 3 and msg.header["f"] == 0.5 and msg.header["m"] == [[1, 0], [0, 1]]


# ------------------------------------------------------------------ malformed frames

def _decode_error(data: bytes) -> P.ProtocolError:
    with pytest.raises(P.ProtocolError) as exc:
        P.decode_frame(data)
    return exc.value


GOOD = P.frame_bytes(P.ping_request(1), {"a": np.arange(6, dtype=np.float32).reshape(2, 3)})


@pytest.mark.parametrize("data, code, fatal", [
    (b"XXXX" + GOOD[4:], "protocol.bad_magic", True),
    (GOOD[:4] + struct.pack("<H", 2) + GOOD[6:], "protocol.version_mismatch", True),
    (_raw_frame(b"{}", header_len=P.MAX_HEADER_BYTES + 1), "protocol.header_too_large", True),
    (_raw_frame(b'{"op":"ping"}', buffer_len=P.MAX_BUFFER_BYTES + 1), "protocol.buffer_too_large", True),
    (GOOD[:10], "protocol.truncated", True),
    (GOOD[:-4], "protocol.truncated", True),
    (_raw_frame(b'{"op": "ping",'), "protocol.bad_json", False),
    (_raw_frame(b'\xff\xfe{"op":"ping"}'), "protocol.bad_json", False),
    (_raw_frame(b'{"op":"ping","x":NaN}'), "protocol.bad_json", False),
    (_raw_frame(b"[" * 100000 + b"]" * 100000), "protocol.bad_json", False),
    (_raw_frame(b'[1, 2, 3]'), "protocol.bad_header", False),
    (_raw_frame(b'"ping"'), "protocol.bad_header", False),
    (_raw_frame(b'{"req_id": 1}'), "protocol.bad_header", False),
    (_raw_frame(b'{"op": 5}'), "protocol.bad_header", False),
    (_raw_frame(b'{"op": "ping", "req_id": [1]}'), "protocol.bad_header", False),
    (_raw_frame(b'{"op": "ping", "arrays": {}}'), "protocol.bad_header", False),
    (_raw_frame(b" "), "protocol.bad_header", False),
])
def test_malformed_frames_raise_the_right_code(data, code, fatal):
    err = _decode_error(data)
    assert err.code == code
    assert err.fatal is fatal
    assert err.advice  # every error tells the user what to do
    assert isinstance(err, LatentforgeError)


def _desc(**kw):
    d = {"name": "a", "dtype": "f32", "shape": [2, 3], "offset": 0, "nbytes": 24}
    d.update(kw)
    return d


@pytest.mark.parametrize("descs, buf_len", [
    ([_desc(nbytes=20)], 24),                       # shape/byte mismatch
    ([_desc(shape=[2, 4])], 24),                    # shape says more than nbytes
    ([_desc(offset=8)], 24),                        # runs past the buffer
    ([_desc(offset=4096)], 24),                     # offset outside the buffer
    ([_desc(offset=4)], 32),                        # misaligned
    ([_desc(offset=-8)], 24),                       # negative offset
    ([_desc(dtype="c64")], 24),                     # unknown dtype
    ([_desc(dtype="object")], 24),
    ([_desc(dtype="O")], 24),
    ([_desc(shape=[-2, -3])], 24),                  # negative dims
    ([_desc(shape=[2.0, 3])], 24),                  # float dims
    ([_desc(shape="2,3")], 24),
    ([_desc(shape=[1] * 9, nbytes=4, dtype="f32")], 24),  # too many dims
    ([_desc(name="")], 24),
    ([_desc(), _desc(offset=24)], 48),              # duplicate names
    ([_desc(), _desc(name="b", offset=16, shape=[2], nbytes=8)], 48),  # overlap
    (["not a dict"], 24),
    ([_desc(name=f"a{i}", shape=[0], nbytes=0) for i in range(P.MAX_ARRAYS + 1)], 0),
])
def test_bad_array_descriptors_raise_bad_array(descs, buf_len):
    data = _raw_frame(_header_with(descs), bytes(buf_len))
    err = _decode_error(data)
    assert err.code == "protocol.bad_array", err
    assert err.req_id == 7 and not err.fatal


def test_bool_bytes_other_than_0_and_1_are_refused():
    data = _raw_frame(_header_with([{"name": "m", "dtype": "bool", "shape": [3], "offset": 0, "nbytes": 3}]),
                      b"\x00\x01\x02" + bytes(5))
    assert _decode_error(data).code == "protocol.bad_array"


def test_trailing_bytes_after_a_frame_are_refused():
    assert _decode_error(GOOD + b"\0").code == "protocol.bad_header"


def test_encode_limits():
    with pytest.raises(P.HeaderTooLarge):
        P.frame_bytes({"op": "ping", "blob": "x" * (P.MAX_HEADER_BYTES + 1)})
    with pytest.raises(P.BadArray):
        P.encode_frame(P.ping_request(1), {f"a{i}": np.zeros(0) for i in range(P.MAX_ARRAYS + 1)})
    with pytest.raises(P.BadArray):
        P.encode_frame(P.ping_request(1), {"a": np.zeros((1,) * 9)})
    with pytest.raises(P.BadHeader):
        P.encode_frame({"no": "op"})


def test_validate_request():
    P.validate_request(P.ping_request(1))
    with pytest.raises(P.UnknownOp) as exc:
        P.validate_request({"op": "explode", "req_id": 4})
    assert exc.value.code == "protocol.unknown_op" and exc.value.req_id == 4
    with pytest.raises(InvalidRequest):
        P.validate_request({"op": "cancel", "req_id": 1})
    with pytest.raises(InvalidRequest):
        P.validate_request({"op": "jobs", "req_id": 1, "limit": 0})
    with pytest.raises(InvalidRequest):
        P.validate_request({"op": "jobs", "req_id": 1, "state": ["bogus"]})
    with pytest.raises(InvalidRequest):
        P.validate_request({"op": "hello", "req_id": 1, "version": "1"})
    with pytest.raises(InvalidRequest):
        P.validate_request({"op": "submit", "req_id": 1, "spec": {"task": "dance", "model": "m"}})
    with pytest.raises(InvalidRequest):
        P.check_spec({"task": "generate", "model": "m", "priority": 1.5})
    assert P.check_spec({"task": "generate", "model": "m"}) == {"task": "generate", "model": "m",
                                                                  "params": {}, "priority": 0}


def test_error_from_header_restores_class_and_code():
    err = P.error_from_header(P.error_event(ModelUnavailable("gone"), job_id="j"))
    assert isinstance(err, ModelUnavailable) and err.message == "gone" and err.details["job_id"] == "j"
    err = P.error_from_header({"op": "error", "code": "protocol.version_mismatch", "message": "v"})
    assert isinstance(err, P.VersionMismatch)
    err = P.error_from_header({"op": "error", "code": "someone.else", "message": "m", "advice": "a"})
    assert type(err) is LatentforgeError and err.code == "someone.else" and err.advice == "a"


# ---------------------------------------------------------------------- streams

def test_read_message_over_a_socket_stream():
    a, b = socket.socketpair()
    try:
        big = np.arange(300_000, dtype=np.float32).reshape(-1, 3)
        frames = [(P.ping_request(i), {"v": big[: i * 1000]}) for i in range(5)]

        def send():
            for h, arr in frames:
                P.send_message(a, h, arr)
            a.shutdown(socket.SHUT_WR)

        t = threading.Thread(target=send)
        t.start()
        for h, arr in frames:
            msg = P.read_message(b)
            assert msg.req_id == h["req_id"]
            np.testing.assert_array_equal(msg.arrays["v"], arr["v"])
        assert P.read_message(b) is None  # clean end of stream
        t.join()
    finally:
        a.close()
        b.close()


def test_non_fatal_error_leaves_the_stream_at_the_next_frame():
    a, b = socket.socketpair()
    try:
        a.sendall(_raw_frame(b'{"op": "ping", "req_id": 3, "arrays": [{"name": "x"}]}', bytes(16)))
        a.sendall(P.frame_bytes(P.ping_request(4)))
        with pytest.raises(P.BadArray) as exc:
            P.read_message(b)
        assert exc.value.req_id == 3
        assert P.read_message(b).req_id == 4
    finally:
        a.close()
        b.close()


def test_truncated_stream_raises_truncated():
    a, b = socket.socketpair()
    try:
        a.sendall(GOOD[:-5])
        a.shutdown(socket.SHUT_WR)
        with pytest.raises(P.Truncated):
            P.read_message(b)
    finally:
        a.close()
        b.close()


def test_async_read_and_write():
    async def main():
        a, b = socket.socketpair()
        reader, writer_b = await asyncio.open_connection(sock=b)
        reader_a, writer = await asyncio.open_connection(sock=a)
        arr = np.arange(50_000, dtype=np.int32).reshape(-1, 2)
        await P.write_message_async(writer, P.result_event("j", 0, 1, "points", model="m"), {"points": arr})
        await P.write_message_async(writer, P.ping_request(2))
        writer.write(GOOD[:-3])
        await writer.drain()
        writer.write_eof()
        m1 = await P.read_message_async(reader)
        m2 = await P.read_message_async(reader)
        np.testing.assert_array_equal(m1.arrays["points"], arr)
        assert m1.header["final"] is True and m2.op == "ping"
        with pytest.raises(P.Truncated):
            await P.read_message_async(reader)
        # a clean end of stream at a frame boundary reads as None
        writer_b.write_eof()
        assert await P.read_message_async(reader_a) is None
        writer.close()
        writer_b.close()

    asyncio.run(main())


def test_documented_example_frame_is_exact():
    expected = (bytes.fromhex("4c465247" "0100" "1e000000" "0000000000000000")
                + b'{"op":"ping","req_id":1}' + b" " * 6)
    assert P.frame_bytes(P.ping_request(1)) == expected


def test_every_code_and_op_is_documented(repo_root):
    protocol_doc = (repo_root / "docs" / "protocol.md").read_text()
    errors_doc = (repo_root / "docs" / "errors.md").read_text()
    import engine.client as client_module
    classes = [v for mod in (P, client_module) for v in vars(mod).values()
               if isinstance(v, type) and issubclass(v, LatentforgeError) and v.__module__ == mod.__name__]
    assert len(classes) >= 15
    for cls in classes:
        assert f"`{cls.code}`" in errors_doc, cls.code
        assert cls.advice, cls.code
        if cls.code != "protocol.error":
            assert f"`{cls.code}`" in protocol_doc, cls.code
    for op in P.REQUEST_OPS + P.REPLY_OPS + P.EVENT_OPS:
        assert f"| `{op}`" in protocol_doc, op
    for code in P.DTYPES:
        assert f"| `{code}`" in protocol_doc, code


def test_random_corruption_only_ever_raises_protocol_errors():
    rng = np.random.default_rng(1234)
    base = bytearray(P.frame_bytes(
        P.result_event("job", 0, 1, "mesh", model="m", meta={"a": [1, 2.5, None]}),
        {"vertices": np.ones((4, 3), np.float32), "faces": np.zeros((2, 3), np.int32),
         "mask": np.ones(3, bool)}))
    decoded = refused = 0
    for _ in range(3000):
        data = bytearray(base)
        for pos in rng.integers(0, len(data), size=rng.integers(1, 4)):
            data[pos] = int(rng.integers(0, 256))
        if rng.random() < 0.2:
            data = data[: rng.integers(0, len(data))]
        try:
            P.decode_frame(data)
            decoded += 1
        except P.ProtocolError:
            refused += 1
    assert decoded and refused  # both outcomes happen; nothing else was raised


def test_bench_script_measures_throughput(repo_root):
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_protocol", repo_root / "scripts" / "bench_protocol.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = bench.bench_throughput(20_000, 1)
    assert out["raw_gbps"] > 0 and out["protocol_gbps"] > 0
    assert out["ratio"] == pytest.approx(out["protocol_gbps"] / out["raw_gbps"], rel=0.01)
