"""Engine server over real sockets: every request, auth, permissions, malformed frames, cancel,
re-subscribe, slow clients. The engine runs in-process on its own event loop thread."""

from __future__ import annotations

import json
import os
import socket
import stat
import struct
import threading
import time

import numpy as np
import pytest

from engine import protocol
from engine.errors import LatentforgeError
from engine.protocol import AuthFailed
from engine.server import address as addr
from server_harness import InProcessEngine, arrays_sha, is_terminal, raw_connect, short_tmp, wait_for

EXTRA = "server_slow_pipeline:SlowPipeline"


@pytest.fixture
def engine(monkeypatch):
    monkeypatch.setenv("LATENTFORGE_EXTRA_PIPELINES", EXTRA)
    eng = InProcessEngine(short_tmp())
    yield eng
    eng.stop()


@pytest.fixture
def tcp_engine(monkeypatch):
    monkeypatch.setenv("LATENTFORGE_EXTRA_PIPELINES", EXTRA)
    eng = InProcessEngine(short_tmp(), tcp=True)
    yield eng
    eng.stop()


def slow(**params):
    return {"task": "generate", "model": "slow", "params": params}


def test_every_request(engine):
    c = engine.client(client_name="test")
    welcome = c.welcome
    assert welcome["version"] == protocol.PROTOCOL_VERSION and welcome["device"] == "cpu"
    assert {m["name"] for m in welcome["models"]} >= {"procedural", "points", "mesh", "views", "slow"}
    assert welcome["limits"]["max_header_bytes"] == protocol.MAX_HEADER_BYTES
    assert c.ping() < 5
    models = c.models()
    assert models["device"] == "cpu"
    by_name = {m["name"]: m for m in models["models"]}
    assert by_name["procedural"]["available"] and by_name["procedural"]["tasks"]["generate"]["available"]
    assert not by_name["procedural"]["tasks"]["refine"]["available"]
    assert "procedural" in by_name["procedural"]["tasks"]["refine"]["reason"]
    assert not by_name["mesh"]["available"] and "not trained" in by_name["mesh"]["reason"]
    assert not by_name["views"]["available"]

    job_id = c.submit({"task": "generate", "model": "procedural", "params": {"category": "chair", "count": 2,
                                                                            "seed": 11}})
    live = [m for m in wait_for(c.events, is_terminal(job_id)) if m.job_id == job_id]
    ops = [m.op for m in live]
    assert ops[0] == "progress" and "preview" in ops and ops.count("result") == 2
    results = [m for m in live if m.op == "result"]
    assert results[0].arrays["vertices"].dtype == np.float32 and results[0].arrays["faces"].dtype == np.int32
    assert results[0].get("seed") == 11 and results[1].get("seed") == 12

    stored = c.result(job_id)
    assert [m.get("index") for m in stored] == [0, 1] and stored[-1].get("final")
    assert [arrays_sha(m.arrays) for m in stored] == [arrays_sha(m.arrays) for m in results]

    jobs = c.jobs(limit=5)
    assert jobs[0]["job_id"] == job_id and jobs[0]["state"] == "finished" and jobs[0]["n_results"] == 2
    assert c.jobs(state=["failed"]) == []

    assert c.subscribe(job_id) == "finished"
    replay = wait_for(c.events, is_terminal(job_id))
    assert [m.get("index") for m in replay if m.op == "result"] == [0, 1]
    assert c.cancel(job_id) == "finished"

    with pytest.raises(LatentforgeError) as err:
        c.result("no-such-job")
    assert err.value.code == "job.not_found"
    with pytest.raises(LatentforgeError) as err:
        c.subscribe("no-such-job")
    assert err.value.code == "job.not_found"
    with pytest.raises(LatentforgeError) as err:
        c.submit({"task": "generate", "model": "procedural", "params": {"prompt": "a spaceship"}})
    assert err.value.code == "procedural.no_category"
    with pytest.raises(LatentforgeError) as err:
        c.submit({"task": "generate", "model": "views", "params": {}})
    assert err.value.code == "model.unavailable"

    running = c.submit(slow(steps=500, delay=0.01))
    with pytest.raises(LatentforgeError) as err:
        c.result(running)
    assert err.value.code == "job.not_finished"
    c.shutdown()
    wait_for(c.events, is_terminal(running))  # shutdown cancels it
    engine._thread.join(20)
    assert not engine._thread.is_alive()
    assert not os.path.exists(engine.address[len("unix://"):])
    assert engine.store.job(running)["state"] == "cancelled"
    c.close()


def test_socket_and_directory_permissions(engine):
    path = engine.address[len("unix://"):]
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700


def test_tcp_token(tcp_engine):
    token_file = tcp_engine.token_file
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(token_file)).st_mode) == 0o700
    assert tcp_engine.address.startswith("tcp://127.0.0.1:")
    c = tcp_engine.client()
    assert c.ping() < 5
    for token in ("wrong", None, ""):
        s = raw_connect(tcp_engine.address, hello=False)
        protocol.send_message(s, protocol.hello_request(1, token=token))
        msg = protocol.read_message(s)
        assert msg.op == "error" and msg.get("code") == "auth.failed" and msg.req_id == 1
        assert protocol.read_message(s) is None  # closed
        s.close()
    from engine.client import EngineClient
    bad = EngineClient(tcp_engine.address, token="nope", reconnect=False)
    with pytest.raises(AuthFailed):
        bad.connect(timeout=5)
    assert c.ping() < 5  # the good client is unaffected
    c.close()


def test_remote_interfaces_need_the_flag():
    with pytest.raises(addr.RemoteNotAllowed):
        addr.check_host("0.0.0.0", allow_remote=False)
    addr.check_host("0.0.0.0", allow_remote=True)
    addr.check_host("127.0.0.1", allow_remote=False)
    addr.check_host("::1", allow_remote=False)


def test_requests_before_hello_and_version_mismatch(engine):
    s = raw_connect(engine.address, hello=False)
    protocol.send_message(s, protocol.ping_request(7))
    msg = protocol.read_message(s)
    assert msg.get("code") == "auth.required" and msg.req_id == 7
    assert protocol.read_message(s) is None
    s.close()
    s = raw_connect(engine.address, hello=False)
    protocol.send_message(s, protocol.hello_request(1, version=99))
    msg = protocol.read_message(s)
    assert msg.get("code") == "protocol.version_mismatch"
    assert protocol.read_message(s) is None
    s.close()


def _frame(header: bytes, buffer: bytes = b"", version: int = 1, magic: bytes = b"LFRG") -> bytes:
    return struct.pack("<4sHIQ", magic, version, len(header), len(buffer)) + header + buffer


_BAD_ARRAY = json.dumps({"op": "ping", "req_id": 5, "arrays": [
    {"name": "x", "dtype": "f32", "shape": [4, 3], "offset": 0, "nbytes": 40}]}).encode()

MALFORMED = {
    # name: (bytes to send, expected code, connection kept?)
    "bad_magic": (_frame(b'{"op":"ping"}', magic=b"HTTP"), "protocol.bad_magic", False),
    "frame_version": (_frame(b'{"op":"ping"}', version=2), "protocol.version_mismatch", False),
    "oversized_header": (struct.pack("<4sHIQ", b"LFRG", 1, (1 << 20) + 1, 0), "protocol.header_too_large", False),
    "oversized_buffer": (struct.pack("<4sHIQ", b"LFRG", 1, 16, 1 << 40), "protocol.buffer_too_large", False),
    "shape_byte_mismatch": (_frame(_BAD_ARRAY, bytes(48)), "protocol.bad_array", True),
    "unknown_dtype": (_frame(json.dumps({"op": "ping", "arrays": [
        {"name": "x", "dtype": "c64", "shape": [1], "offset": 0, "nbytes": 8}]}).encode(), bytes(8)),
        "protocol.bad_array", True),
    "unknown_op": (_frame(b'{"op":"dance","req_id":3}'), "protocol.unknown_op", True),
    "invalid_json": (_frame(b'{"op": "ping", oops}'), "protocol.bad_json", True),
    "nan_json": (_frame(b'{"op": "ping", "x": NaN}'), "protocol.bad_json", True),
    "not_an_object": (_frame(b'[1, 2, 3]'), "protocol.bad_header", True),
    "bad_field": (_frame(b'{"op":"jobs","req_id":4,"limit":"many"}'), "request.invalid", True),
    "truncated": (_frame(b'{"op":"ping","req_id":1}')[:-6], "protocol.truncated", False),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_frame_gets_an_error_and_others_keep_being_served(engine, case):
    data, code, kept = MALFORMED[case]
    other = engine.client(client_name="bystander")
    job_id = other.submit(slow(steps=15, delay=0.01))
    s = raw_connect(engine.address)
    s.sendall(data)
    if case == "truncated":
        s.shutdown(socket.SHUT_WR)
    msg = protocol.read_message(s)
    assert msg.op == "error" and msg.get("code") == code, msg.header
    assert msg.get("message") and msg.get("advice")
    if kept:
        protocol.send_message(s, protocol.ping_request(9))
        reply = protocol.read_message(s)
        assert reply.op == "pong" and reply.req_id == 9
    else:
        assert protocol.read_message(s) is None
    s.close()
    events = wait_for(other.events, is_terminal(job_id))
    assert events[-1].op == "result"
    assert other.ping() < 5
    other.close()


def test_cancel_mid_job(engine):
    c = engine.client()
    job_id = c.submit(slow(steps=2000, delay=0.01))
    wait_for(c.events, lambda m: m.op == "progress" and m.job_id == job_id and m.get("step", 0) >= 3)
    t0 = time.monotonic()
    assert c.cancel(job_id) == "running"
    events = wait_for(c.events, is_terminal(job_id))
    assert events[-1].op == "cancelled" and time.monotonic() - t0 < 2
    assert c.jobs(limit=1)[0]["state"] == "cancelled"
    with pytest.raises(LatentforgeError) as err:
        c.result(job_id)
    assert err.value.code == "job.not_finished"
    c.close()


def test_disconnect_and_resubscribe(engine):
    a = engine.client(client_name="a")
    job_id = a.submit(slow(steps=40, delay=0.02, count=3))
    wait_for(a.events, lambda m: m.op == "progress" and m.job_id == job_id and m.get("step", 0) >= 2)
    a.close()  # gone mid-job; the job goes on

    b = engine.client(client_name="b")
    assert b.subscribe(job_id) == "running"
    events = [m for m in wait_for(b.events, is_terminal(job_id)) if m.job_id == job_id]
    assert any(m.op == "progress" for m in events)
    live = [m for m in events if m.op == "result"]
    assert [m.get("index") for m in live] == [0, 1, 2]

    c = engine.client(client_name="c")
    assert c.subscribe(job_id) == "finished"
    replay = [m for m in wait_for(c.events, is_terminal(job_id)) if m.op == "result"]
    assert [arrays_sha(m.arrays) for m in replay] == [arrays_sha(m.arrays) for m in live]
    assert [m.get("sha256") for m in replay] == [m.get("sha256") for m in live]
    b.close()
    c.close()


def test_subscribe_while_results_are_being_delivered_sees_each_once(engine):
    c = engine.client()
    job_id = c.submit(slow(steps=1, delay=0, count=40, n_points=20000))
    other = engine.client()
    assert other.subscribe(job_id) in ("queued", "running", "finished")
    events = [m for m in wait_for(other.events, is_terminal(job_id)) if m.op == "result"]
    indices = [m.get("index") for m in events]
    assert sorted(set(indices)) == list(range(40)) and indices[-1] == 39
    c.close()
    other.close()


def test_a_client_that_stops_reading_is_dropped_and_others_are_served(monkeypatch):
    monkeypatch.setenv("LATENTFORGE_EXTRA_PIPELINES", EXTRA)
    eng = InProcessEngine(short_tmp(), config={"max_queued_bytes": 4 << 20, "max_queued_events": 50})
    try:
        stuck = raw_connect(eng.address)
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        # 30 results of 1.2 MB each that this client never reads.
        protocol.send_message(stuck, protocol.submit_request(2, slow(steps=30, delay=0.005, count=30,
                                                                      n_points=100_000)))
        good = eng.client()
        job_id = good.submit(slow(steps=5, delay=0.01))
        done = threading.Event()

        def pinger():
            while not done.is_set():
                good.ping(timeout=5)
                time.sleep(0.01)
        t = threading.Thread(target=pinger)
        t.start()
        wait_for(good.events, is_terminal(job_id), timeout=60)
        deadline = time.monotonic() + 30
        while eng.server.stats["overflows"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        done.set()
        t.join()
        assert eng.server.stats["overflows"] >= 1
        assert good.ping() < 5
        good.close()
        stuck.close()
    finally:
        eng.stop()


def test_before_hello_only_small_frames_and_a_deadline(monkeypatch):
    monkeypatch.setenv("LATENTFORGE_EXTRA_PIPELINES", EXTRA)
    eng = InProcessEngine(short_tmp(), config={"hello_timeout_s": 0.5})
    try:
        s = raw_connect(eng.address, hello=False)
        s.sendall(struct.pack("<4sHIQ", b"LFRG", 1, 16, 1 << 20))  # 1 MiB of arrays before hello
        msg = protocol.read_message(s)
        assert msg.get("code") == "protocol.buffer_too_large"
        assert protocol.read_message(s) is None
        s.close()
        s = raw_connect(eng.address, hello=False)
        t0 = time.monotonic()
        assert s.recv(1) == b""  # silent peer: closed after the hello deadline
        assert time.monotonic() - t0 < 5
        s.close()
        assert eng.client().ping() < 5
    finally:
        eng.stop()


def test_a_client_that_reads_late_gets_coalesced_progress_fewer_previews_and_every_result(monkeypatch):
    monkeypatch.setenv("LATENTFORGE_EXTRA_PIPELINES", EXTRA)
    eng = InProcessEngine(short_tmp(), preview_hz=1000)
    try:
        s = raw_connect(eng.address)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        protocol.send_message(s, protocol.submit_request(2, slow(steps=150, delay=0.002, count=3,
                                                                  n_points=20000)))
        accepted = protocol.read_message(s)
        assert accepted.op == "accepted"
        job_id = accepted.job_id
        deadline = time.monotonic() + 30
        while eng.store.job(job_id)["state"] != "finished" and time.monotonic() < deadline:
            time.sleep(0.05)  # not reading meanwhile
        ops = []
        while True:
            msg = protocol.read_message(s)
            ops.append(msg.op)
            if msg.op == "result" and msg.get("final"):
                break
        assert ops.count("result") == 3
        assert ops.count("progress") < 100  # newer progress replaced unsent ones
        assert 1 <= ops.count("preview") < 100  # older previews dropped, never results
        s.close()
    finally:
        eng.stop()


def test_pruned_results_are_refused_cleanly(engine):
    c = engine.client()
    job_id = c.submit({"task": "generate", "model": "procedural", "params": {"category": "chair", "seed": 1}})
    wait_for(c.events, is_terminal(job_id))
    stats = engine.store.prune(max_age_s=0, now=time.time() + 1, grace_s=0)
    assert stats["pruned_jobs"] == 1
    for call in (c.result, c.subscribe):
        with pytest.raises(LatentforgeError) as err:
            call(job_id)
        assert err.value.code == "result.unavailable" and err.value.advice
    assert c.jobs(limit=1)[0]["pruned"] is True
    c.close()
