"""JobManager: validation, priority/FIFO order, progress/preview rate, cancellation, failures, persistence order."""

from __future__ import annotations

import threading
import time

import pytest

import server_slow_pipeline as slow
from engine.errors import InvalidRequest, ModelUnavailable
from engine.server.jobs import JobManager, JobNotFound
from engine.server.store import Store

EXTRA = "server_slow_pipeline:SlowPipeline"


class Sink:
    """Collects events; checks that a result is stored before its event, and the final state before the terminal one."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.events: list[tuple[str, dict, dict | None]] = []
        self.cond = threading.Condition()
        self.violations: list[str] = []

    def __call__(self, job_id, header, arrays):
        op = header["op"]
        if op == "result":
            if header["index"] not in [r.index for r in self.store.results(job_id)]:
                self.violations.append(f"result {header['index']} of {job_id} announced before stored")
            if header["final"] and self.store.job(job_id)["state"] != "finished":
                self.violations.append(f"{job_id} final result before finished")
        if op in ("error", "cancelled") and self.store.job(job_id)["state"] not in ("failed", "cancelled"):
            self.violations.append(f"{job_id} {op} before its state was recorded")
        with self.cond:
            self.events.append((job_id, header, arrays))
            self.cond.notify_all()

    def of(self, job_id, op=None):
        with self.cond:
            return [h for j, h, _ in self.events if j == job_id and (op is None or h["op"] == op)]

    def wait_terminal(self, job_id, timeout=20.0):
        def done():
            return any(h["op"] in ("error", "cancelled") or (h["op"] == "result" and h["final"])
                       for h in self.of(job_id))
        with self.cond:
            assert self.cond.wait_for(done, timeout), f"{job_id} did not end: {[h['op'] for h in self.of(job_id)]}"
        return self.of(job_id)[-1]


@pytest.fixture
def mgr(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTFORGE_EXTRA_PIPELINES", EXTRA)
    store = Store(tmp_path)
    sink = Sink(store)
    manager = JobManager(store, "cpu", preview_hz=10, sink=sink)
    manager.start()
    slow.GATES.clear()
    slow.RUN_ORDER.clear()
    yield manager, sink, store
    for gate in slow.GATES.values():
        gate.set()
    manager.stop()
    store.close()


def spec(**params):
    return {"task": "generate", "model": "slow", "params": params, "priority": params.pop("priority", 0)}


def test_invalid_specs_create_no_job(mgr):
    manager, _, store = mgr
    with pytest.raises(InvalidRequest):
        manager.submit({"task": "paint", "model": "slow", "params": {}})
    with pytest.raises(ModelUnavailable) as err:
        manager.submit({"task": "generate", "model": "nope", "params": {}})
    assert "known models" in err.value.message
    with pytest.raises(ModelUnavailable):
        manager.submit({"task": "generate", "model": "mesh", "params": {}})
    with pytest.raises(ModelUnavailable):
        manager.submit({"task": "refine", "model": "slow", "params": {}})
    with pytest.raises(InvalidRequest):
        manager.submit(spec(steps=0))
    with pytest.raises(InvalidRequest):
        manager.submit(spec(steps=1, priority=10**20))
    with pytest.raises(InvalidRequest):
        manager.submit({"task": "generate", "model": "slow", "params": {"arrays": 1}})
    assert store.jobs() == []


def test_priority_then_fifo(mgr):
    manager, sink, _ = mgr
    gate = slow.GATES.setdefault("g", threading.Event())
    blocker, _ = manager.submit(spec(steps=1, delay=0, gate="g", tag="blocker"))
    deadline = time.monotonic() + 10
    while manager.live_state(blocker) != "running" and time.monotonic() < deadline:
        time.sleep(0.01)
    ids = []
    for tag, prio in (("a0", 0), ("b5", 5), ("c0", 0), ("d5", 5), ("e9", 9)):
        job_id, position = manager.submit(spec(steps=1, delay=0, tag=tag, priority=prio))
        ids.append(job_id)
    assert manager.position(ids[-1]) == 0  # e9 runs next
    assert manager.position(ids[0]) == 3  # behind e9, b5, d5
    gate.set()
    for job_id in ids:
        sink.wait_terminal(job_id)
    assert slow.RUN_ORDER == ["blocker", "e9", "b5", "d5", "a0", "c0"]


def test_progress_every_step_previews_rate_limited_and_n_results(mgr):
    manager, sink, store = mgr
    job_id, _ = manager.submit(spec(steps=30, delay=0.02, count=3))
    last = sink.wait_terminal(job_id)
    assert last["op"] == "result" and last["final"] and last["count"] == 3
    progress = [h for h in sink.of(job_id, "progress") if h["stage"] == "denoise"]
    assert [h["step"] for h in progress] == list(range(1, 31))
    assert all(h["total"] == 30 for h in progress)
    assert progress[10]["eta_s"] > 0 and progress[-1]["eta_s"] == 0
    previews = sink.of(job_id, "preview")
    # 30 steps x 20 ms = 0.6 s at 10 Hz: about 6-7 previews, never one per step.
    assert 2 <= len(previews) <= 9, len(previews)
    results = sink.of(job_id, "result")
    assert [h["index"] for h in results] == [0, 1, 2] and [h["final"] for h in results] == [False, False, True]
    assert store.job(job_id)["n_results"] == 3
    assert not sink.violations


def test_cancel_queued_is_immediate_and_running_stops_at_next_step(mgr):
    manager, sink, store = mgr
    running, _ = manager.submit(spec(steps=1000, delay=0.01))
    queued, _ = manager.submit(spec(steps=1))
    while not sink.of(running, "progress"):
        time.sleep(0.01)
    assert manager.cancel(queued) == "cancelled"
    assert sink.of(queued)[-1]["op"] == "cancelled"
    assert store.job(queued)["state"] == "cancelled"
    t0 = time.monotonic()
    assert manager.cancel(running) == "running"
    assert sink.wait_terminal(running)["op"] == "cancelled"
    assert time.monotonic() - t0 < 2
    assert [t["state"] for t in store.transitions(running)] == ["queued", "running", "cancelled"]
    assert manager.cancel(running) == "cancelled"  # already final: no-op
    with pytest.raises(JobNotFound):
        manager.cancel("nope")
    assert not sink.violations
    assert len([h for h in sink.of(running) if h["op"] in ("cancelled", "error", "result")]) == 1


def test_failures_are_reported_and_the_worker_keeps_going(mgr):
    manager, sink, store = mgr
    crash, _ = manager.submit(spec(steps=4, delay=0, fail="crash"))
    error, _ = manager.submit(spec(steps=4, delay=0, fail="error"))
    ok, _ = manager.submit(spec(steps=2, delay=0))
    e1 = sink.wait_terminal(crash)
    assert e1["op"] == "error" and e1["code"] == "job.failed" and "simulated crash" in e1["message"]
    e2 = sink.wait_terminal(error)
    assert e2["code"] == "slow.error" and e2["advice"] == "try again"
    assert sink.wait_terminal(ok)["op"] == "result"
    assert store.job(crash)["state"] == "failed" and store.job(crash)["error"]["code"] == "job.failed"
    assert not sink.violations


def test_procedural_generate_through_the_manager(mgr):
    manager, sink, store = mgr
    job_id, _ = manager.submit({"task": "generate", "model": "procedural",
                                "params": {"prompt": "two wooden chairs", "count": 2, "seed": 3}})
    last = sink.wait_terminal(job_id)
    assert last["op"] == "result", last
    results = sink.of(job_id, "result")
    assert [h["seed"] for h in results] == [3, 4]
    assert results[0]["meta"]["category"] == "chair" and results[0]["meta"]["captions"]
    assert sink.of(job_id, "preview")  # the first shape's surface points
    stored = store.job(job_id)["spec"]["params"]
    assert stored["category"] == "chair" and stored["seed"] == 3
