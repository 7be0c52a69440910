"""EngineClient against a small scripted engine (a socket server thread in this file)."""

from __future__ import annotations

import os
import queue
import socket
import struct
import threading
import time

import numpy as np
import pytest

from engine import protocol as P
from engine.client import (ClientClosed, ConnectionFailed, ConnectionLost, EngineClient, RequestTimeout,
                           parse_address)
from engine.errors import InvalidRequest, JobCancelled, ModelUnavailable


class FakeEngine:
    """Speaks the protocol with scripted behaviour; records every request it gets."""

    def __init__(self, path: str, token: str | None = None) -> None:
        self.path = path
        self.token = token
        self.requests: list[dict] = []
        self.ignore_ops: set[str] = set()
        self.welcome_version = P.PROTOCOL_VERSION
        self.frame_version = P.PROTOCOL_VERSION
        self.reorder_jobs = 0          # hold this many 'jobs' requests, then answer in reverse
        self.held: list[tuple] = []
        self.results: dict[str, list[tuple[dict, dict]]] = {}   # job_id -> stored results
        self.running: dict[str, int] = {}   # job_id -> results to send before dropping the client
        self.garbage_before_pong = False
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self._next_job = 0
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(8)
        self._stop = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def send(self, conn, header, arrays=None) -> None:
        data = P.frame_bytes(header, arrays)
        if self.frame_version != P.PROTOCOL_VERSION:
            data = data[:4] + struct.pack("<H", self.frame_version) + data[6:]
        with self.lock:
            conn.sendall(data)

    def drop_all(self) -> None:
        with self.lock:
            conns, self.conns = self.conns, []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def close(self) -> None:
        self._stop = True
        self.listener.close()
        self.drop_all()

    def mesh_result(self, job_id, index, count, req_id=None):
        n = 10 + index
        header = P.result_event(job_id, index, count, "mesh", model="procedural", prompt=None, seed=index,
                                req_id=req_id)
        arrays = {"vertices": np.full((n, 3), index, np.float32), "faces": np.zeros((n, 3), np.int32)}
        return header, arrays

    def _serve(self, conn) -> None:
        try:
            while True:
                msg = P.read_message(conn)
                if msg is None:
                    return
                self.requests.append(dict(msg.header))
                self._handle(conn, msg)
        except (OSError, P.ProtocolError):
            return

    def _handle(self, conn, msg) -> None:
        h, rid = msg.header, msg.req_id
        op = msg.op
        if op in self.ignore_ops:
            return
        if op == "hello":
            if self.token is not None and h.get("token") != self.token:
                self.send(conn, P.error_event(P.AuthFailed("Wrong token."), req_id=rid))
                conn.shutdown(socket.SHUT_RDWR)
                return
            self.send(conn, P.welcome_reply(rid, server="fake 0", device="cpu", models=[])
                      | {"version": self.welcome_version})
        elif op == "ping":
            if self.garbage_before_pong:
                # a frame whose array descriptor lies about its size: skipped whole by the client
                bad = b'{"op":"progress","job_id":"j","arrays":[{"name":"a","dtype":"f32","shape":[9],"offset":0,"nbytes":4}]}'
                with self.lock:
                    conn.sendall(struct.pack("<4sHIQ", P.MAGIC, P.PROTOCOL_VERSION, len(bad), 8) + bad + bytes(8))
            self.send(conn, P.pong_reply(rid))
        elif op == "models":
            self.send(conn, P.models_reply(rid, "cpu", [{"name": "procedural", "available": True}]))
        elif op == "jobs":
            self.held.append((conn, rid, h["limit"]))
            if len(self.held) >= max(1, self.reorder_jobs):
                held, self.held = self.held, []
                for c, r, limit in reversed(held):
                    self.send(c, P.jobs_reply(r, [{"job_id": f"job-{limit}", "state": "finished"}]))
        elif op == "submit":
            spec = h["spec"]
            if spec["model"] != "procedural":
                self.send(conn, P.error_event(ModelUnavailable(f"No model {spec['model']!r}."), req_id=rid))
                return
            self._next_job += 1
            job_id = f"job-{self._next_job}"
            count = int(spec["params"].get("count", 1))
            self.results[job_id] = [self.mesh_result(job_id, i, count) for i in range(count)]
            self.send(conn, P.accepted_reply(rid, job_id, 0))
            for step in range(3):
                self.send(conn, P.progress_event(job_id, "denoise", step, 3, eta_s=0.1, elapsed_s=0.01))
            sent_before_drop = spec["params"].get("drop_after")
            for i, (header, arrays) in enumerate(self.results[job_id]):
                if sent_before_drop is not None and i == sent_before_drop:
                    self.drop_all()
                    return
                self.send(conn, header, arrays)
        elif op == "subscribe":
            job_id = h["job_id"]
            if job_id not in self.results:
                self.send(conn, P.error_event({"code": "job.not_found", "message": "No such job."}, req_id=rid))
                return
            self.send(conn, P.ack_reply(rid, job_id, "finished"))
            for header, arrays in self.results[job_id]:
                self.send(conn, header, arrays)
        elif op == "result":
            stored = self.results.get(h["job_id"])
            if stored is None:
                self.send(conn, P.error_event({"code": "job.not_found", "message": "No such job."}, req_id=rid))
                return
            for header, arrays in stored:
                self.send(conn, dict(header, req_id=rid), arrays)
        elif op == "cancel":
            self.send(conn, P.ack_reply(rid, h["job_id"], "running"))
            self.send(conn, P.cancelled_event(h["job_id"]))
        elif op == "shutdown":
            self.send(conn, P.ack_reply(rid, None, "shutting_down"))
            self.close()
        else:
            self.send(conn, P.error_event(P.UnknownOp(f"Unknown op {op!r}."), req_id=rid))


@pytest.fixture
def engine(tmp_path):
    # AF_UNIX paths are limited to ~100 bytes; pytest's tmp_path can be longer.
    path = os.path.join("/tmp", f"lf-test-{os.getpid()}-{id(tmp_path)}.sock")
    eng = FakeEngine(path)
    yield eng
    eng.close()
    if os.path.exists(path):
        os.unlink(path)


def _client(engine, **kw) -> EngineClient:
    kw.setdefault("request_timeout", 5.0)
    kw.setdefault("reconnect_delay", 0.02)
    client = EngineClient(engine.path, **kw)
    client.connect(timeout=2.0)
    return client


def _drain_until(client, pred, timeout=5.0) -> list:
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = client.events.get(timeout=0.05)
        except queue.Empty:
            continue
        got.append(msg)
        if pred(msg):
            return got
    raise AssertionError(f"condition not met; events were {[m.header for m in got]}")


def test_connect_ping_models_jobs(engine):
    with _client(engine) as client:
        assert client.welcome["server"] == "fake 0"
        assert engine.requests[0]["op"] == "hello" and engine.requests[0]["client"] == "latentforge"
        first = client.events.get(timeout=1)
        assert first.op == "connection" and first.get("state") == "connected"
        rtt = client.ping()
        assert 0 < rtt < 5
        assert client.models()["models"][0]["name"] == "procedural"
        assert client.jobs(limit=3) == [{"job_id": "job-3", "state": "finished"}]
    assert client.events.get(timeout=1).get("state") == "closed"


def test_replies_are_matched_by_req_id_out_of_order(engine):
    engine.reorder_jobs = 4
    with _client(engine) as client:
        results: dict[int, list] = {}

        def call(i):
            results[i] = client.jobs(limit=i)

        threads = [threading.Thread(target=call, args=(i,)) for i in (1, 2, 3, 4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(5)
        assert {i: r[0]["job_id"] for i, r in results.items()} == {i: f"job-{i}" for i in (1, 2, 3, 4)}
        req_ids = [r["req_id"] for r in engine.requests]
        assert len(set(req_ids)) == len(req_ids)


def test_submit_delivers_events_to_queue_and_callback(engine):
    seen = []
    with _client(engine, on_event=seen.append) as client:
        job_id = client.submit({"task": "generate", "model": "procedural", "params": {"count": 2}})
        events = _drain_until(client, lambda m: m.op == "result" and m.get("final"))
        ops = [m.op for m in events if m.op != "connection"]
        assert ops == ["progress"] * 3 + ["result", "result"]
        assert [m.get("step") for m in events if m.op == "progress"] == [0, 1, 2]
        last = events[-1]
        assert last.job_id == job_id and last.get("index") == 1
        assert last.arrays["vertices"].shape == (11, 3) and last.arrays["vertices"].dtype == np.float32
        assert client.following == []  # finished jobs are no longer followed
        assert [m.op for m in seen] == [m.op for m in events]


def test_result_request_returns_messages_not_events(engine):
    with _client(engine) as client:
        job_id = client.submit({"task": "generate", "model": "procedural", "params": {"count": 3}})
        _drain_until(client, lambda m: m.op == "result" and m.get("final"))
        msgs = client.result(job_id)
        assert [m.get("index") for m in msgs] == [0, 1, 2] and msgs[-1].get("final")
        np.testing.assert_array_equal(msgs[2].arrays["vertices"], np.full((12, 3), 2, np.float32))
        assert client.events.empty()
        with pytest.raises(Exception) as exc:
            client.result("job-unknown")
        assert exc.value.code == "job.not_found"


def test_errors_come_back_typed(engine):
    with _client(engine) as client:
        with pytest.raises(ModelUnavailable) as exc:
            client.submit({"task": "generate", "model": "nope"})
        assert exc.value.code == "model.unavailable"
        n = len(engine.requests)
        with pytest.raises(InvalidRequest):
            client.submit({"task": "paint", "model": "procedural"})
        assert len(engine.requests) == n  # refused before sending
        assert client.ping() > 0  # the connection is still fine


def test_cancel_and_subscribe(engine):
    with _client(engine) as client:
        assert client.cancel("job-9") == "running"
        assert _drain_until(client, lambda m: m.op == "cancelled")[-1].job_id == "job-9"
        engine.results["job-old"] = [engine.mesh_result("job-old", 0, 1)]
        assert client.subscribe("job-old") == "finished"
        res = _drain_until(client, lambda m: m.op == "result")[-1]
        assert res.job_id == "job-old" and res.get("final")
        with pytest.raises(Exception) as exc:
            client.subscribe("job-missing")
        assert exc.value.code == "job.not_found"


def test_request_timeout(engine):
    engine.ignore_ops = {"ping"}
    with _client(engine) as client:
        t0 = time.monotonic()
        with pytest.raises(RequestTimeout) as exc:
            client.ping(timeout=0.3)
        assert exc.value.code == "connection.timeout"
        assert time.monotonic() - t0 < 3
        assert client.models()["device"] == "cpu"  # still usable afterwards


def test_reconnect_resubscribes_and_drops_duplicate_results(engine):
    with _client(engine) as client:
        job_id = client.submit({"task": "generate", "model": "procedural",
                                "params": {"count": 3, "drop_after": 1}})
        events = _drain_until(client, lambda m: m.op == "result" and m.get("final"), timeout=10)
        states = [m.get("state") for m in events if m.op == "connection"]
        assert states == ["connected", "lost", "reconnected"]
        results = [m.get("index") for m in events if m.op == "result"]
        assert results == [0, 1, 2]  # index 0 was re-sent after re-subscribing but delivered once
        hellos = [r for r in engine.requests if r["op"] == "hello"]
        subs = [r for r in engine.requests if r["op"] == "subscribe"]
        assert len(hellos) == 2 and [s["job_id"] for s in subs] == [job_id]
        assert client.following == []
        assert client.ping() > 0


def test_pending_request_fails_when_connection_drops(engine):
    engine.ignore_ops = {"ping"}
    with _client(engine) as client:
        threading.Timer(0.2, engine.drop_all).start()
        with pytest.raises(ConnectionLost) as exc:
            client.ping(timeout=5)
        assert exc.value.code == "connection.lost"
        _drain_until(client, lambda m: m.get("state") == "reconnected")
        assert client.models()["device"] == "cpu"


def test_close_fails_waiting_requests(engine):
    engine.ignore_ops = {"ping"}
    client = _client(engine)
    threading.Timer(0.2, client.close).start()
    with pytest.raises(ClientClosed):
        client.ping(timeout=5)
    with pytest.raises(ClientClosed):
        client.ping()


def test_token_and_token_file(engine, tmp_path):
    engine.token = "s3cret"
    with pytest.raises(P.AuthFailed) as exc:
        _client(engine, token="wrong")
    assert exc.value.code == "auth.failed" and exc.value.advice
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    with _client(engine, token_file=token_file) as client:
        assert client.ping() > 0
    hellos = [r for r in engine.requests if r["op"] == "hello"]
    assert [h["token"] for h in hellos] == ["wrong", "s3cret"]
    with pytest.raises(P.AuthFailed):
        _client(engine, token_file=tmp_path / "missing")


def test_version_mismatch_in_welcome_and_in_frames(engine):
    engine.welcome_version = 2
    with pytest.raises(P.VersionMismatch) as exc:
        _client(engine)
    assert "release" in exc.value.advice
    engine.welcome_version = P.PROTOCOL_VERSION
    engine.frame_version = 7
    with pytest.raises(P.VersionMismatch):
        _client(engine)


def test_connect_failure_and_shutdown(engine, tmp_path):
    with pytest.raises(ConnectionFailed) as exc:
        EngineClient(str(tmp_path / "nothing.sock")).connect(timeout=0.5)
    assert exc.value.code == "connection.failed"
    client = _client(engine)
    client.shutdown()
    events = _drain_until(client, lambda m: m.get("state") in ("closed", "lost"))
    assert events[-1].get("state") == "closed"  # no reconnect after shutdown
    client.close()


def test_parse_address():
    assert parse_address("tcp://127.0.0.1:8765") == ("tcp", ("127.0.0.1", 8765))
    assert parse_address("tcp://[::1]:9") == ("tcp", ("::1", 9))
    assert parse_address("localhost:8765") == ("tcp", ("localhost", 8765))
    assert parse_address("/run/lf/engine.sock") == ("unix", "/run/lf/engine.sock")
    assert parse_address("unix:///tmp/a.sock") == ("unix", "/tmp/a.sock")
    assert parse_address("engine.sock") == ("unix", "engine.sock")
    with pytest.raises(ConnectionFailed):
        parse_address("tcp://nohost")


def test_wait_returns_results_or_raises(engine):
    with _client(engine) as client:
        job_id = client.submit({"task": "generate", "model": "procedural", "params": {"count": 2}})
        seen = []
        results = client.wait(job_id, timeout=5, on_event=seen.append)
        assert [m.get("index") for m in results] == [0, 1]
        assert [m.op for m in seen if m.job_id == job_id] == ["progress"] * 3 + ["result"] * 2
        client.cancel("job-x")
        with pytest.raises(JobCancelled):
            client.wait("job-x", timeout=5)
        with pytest.raises(RequestTimeout):
            client.wait("job-never", timeout=0.2)


def test_no_reconnect_means_requests_fail_fast(engine):
    client = _client(engine, reconnect=False)
    engine.drop_all()
    _drain_until(client, lambda m: m.get("state") == "closed")
    t0 = time.monotonic()
    with pytest.raises(ConnectionLost):
        client.ping(timeout=5)
    assert time.monotonic() - t0 < 2
    client.connect(timeout=2)  # an explicit connect starts over
    assert client.ping() > 0
    client.close()


def test_reconnect_rereads_token_file_and_stops_on_auth_failure(engine, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("first")
    engine.token = "first"
    with _client(engine, token_file=token_file) as client:
        # the engine restarts with a new token and rewrites the file: the client follows
        engine.token = "second"
        token_file.write_text("second")
        engine.drop_all()
        _drain_until(client, lambda m: m.get("state") == "reconnected")
        assert client.ping() > 0
        # the token file is briefly missing while the engine restarts: the client keeps trying
        token_file.unlink()
        engine.drop_all()
        _drain_until(client, lambda m: m.get("state") == "lost")
        time.sleep(0.2)
        assert not client.connected
        token_file.write_text("second")
        _drain_until(client, lambda m: m.get("state") == "reconnected")
        # a token that no longer matches: retrying cannot help, so the client stops and says so
        engine.token = "third"
        engine.drop_all()
        failed = _drain_until(client, lambda m: m.get("state") == "failed")[-1]
        assert failed.get("error")["code"] == "auth.failed"
        with pytest.raises(P.AuthFailed):
            client.ping(timeout=5)


def test_bad_frames_are_skipped_and_callback_errors_contained(engine):
    engine.garbage_before_pong = True

    def explode(msg):
        raise RuntimeError("a buggy UI callback")

    with _client(engine, on_event=explode) as client:
        assert client.ping() > 0  # the bad frame before the pong was skipped whole
        assert client.ping() > 0
        job_id = client.submit({"task": "generate", "model": "procedural"})
        assert client.wait(job_id, timeout=5)[0].job_id == job_id  # events still reach the queue
