"""Store: content-addressed result files, job records and transitions, recovery, pruning, lock."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from engine.server.store import EngineAlreadyRunning, ResultUnavailable, Store, StoreError, content_hash


def _arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"vertices": rng.standard_normal((50, 3)).astype(np.float32),
            "faces": rng.integers(0, 50, (30, 3)).astype(np.int32)}


def test_blob_roundtrip_is_byte_identical_and_deterministic(tmp_path):
    store = Store(tmp_path)
    arrays = _arrays()
    sha, size = store.put_blob(arrays)
    assert sha == content_hash(arrays) and size > 0
    first = store.blob_path(sha).read_bytes()
    back = store.get_blob(sha)
    for k, v in arrays.items():
        assert back[k].dtype == v.dtype and back[k].tobytes() == v.tobytes()
    # Same content again: same address, same bytes (fixed zip timestamps), no second file.
    store.blob_path(sha).unlink()
    assert store.put_blob(dict(reversed(list(arrays.items()))))[0] == sha
    assert store.blob_path(sha).read_bytes() == first
    assert len(list(store.blob_dir.glob("*/*.npz"))) == 1


def test_big_endian_and_non_contiguous_hash_like_their_canonical_form(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert content_hash({"x": a.T}) == content_hash({"x": np.ascontiguousarray(a.T)})
    assert content_hash({"x": a.astype(">f4")}) == content_hash({"x": a})
    assert content_hash({"x": a}) != content_hash({"y": a})
    assert content_hash({"x": a}) != content_hash({"x": a.reshape(4, 3)})


def test_damaged_or_missing_file_is_reported(tmp_path):
    store = Store(tmp_path)
    sha, _ = store.put_blob(_arrays())
    path = store.blob_path(sha)
    data = bytearray(path.read_bytes())
    data[-200] ^= 0xFF  # inside the last array's bytes
    path.write_bytes(bytes(data))
    with pytest.raises(ResultUnavailable):
        store.get_blob(sha)
    path.unlink()
    with pytest.raises(ResultUnavailable) as err:
        store.get_blob(sha)
    assert err.value.code == "result.unavailable"


def test_object_arrays_are_refused(tmp_path):
    with pytest.raises(StoreError):
        Store(tmp_path).put_blob({"x": np.array([{"a": 1}], dtype=object)})


def test_jobs_transitions_and_results(tmp_path):
    store = Store(tmp_path)
    spec = {"task": "generate", "model": "procedural", "params": {"category": "chair"}, "priority": 2}
    store.add_job("j1", spec, priority=2, client="test")
    store.add_job("j2", spec, inputs={"image": np.zeros((4, 4, 4), np.uint8)})
    assert store.job("j1")["state"] == "queued" and store.job("nope") is None
    store.set_state("j1", "running")
    rec = store.add_result("j1", 0, "mesh", _arrays(1), {"seed": 1})
    store.set_state("j1", "finished")
    job = store.job("j1")
    assert job["state"] == "finished" and job["n_results"] == 1 and job["started"] and job["finished"]
    assert [t["state"] for t in store.transitions("j1")] == ["queued", "running", "finished"]
    assert [j["job_id"] for j in store.jobs()] == ["j2", "j1"]
    assert [j["job_id"] for j in store.jobs(states=["finished"])] == ["j1"]
    (stored,) = store.results("j1")
    assert stored.sha256 == rec.sha256 and stored.meta == {"seed": 1}
    assert store.load_result(stored)["vertices"].tobytes() == _arrays(1)["vertices"].tobytes()
    assert store.job_inputs("j2")["image"].shape == (4, 4, 4)


def test_recover_fails_running_and_returns_queued_in_order(tmp_path):
    store = Store(tmp_path)
    spec = {"task": "generate", "model": "procedural", "params": {}}
    for job_id, prio in (("a", 0), ("b", 5), ("c", 0), ("d", 0)):
        store.add_job(job_id, spec, priority=prio)
    store.set_state("d", "running")
    store.close()
    store = Store(tmp_path)
    failed, queued = store.recover({"code": "job.interrupted", "message": "engine stopped while the job was running",
                                    "advice": "Submit the job again.", "details": {}})
    assert failed == ["d"]
    assert [q["job_id"] for q in queued] == ["b", "a", "c"]
    d = store.job("d")
    assert d["state"] == "failed" and d["error"]["code"] == "job.interrupted"
    assert d["error"]["message"] == "engine stopped while the job was running"


def test_prune_by_age_and_size_keeps_shared_files(tmp_path):
    store = Store(tmp_path)
    spec = {"task": "generate", "model": "procedural", "params": {}}
    shared = _arrays(99)
    for i in range(4):
        store.add_job(f"j{i}", spec)
        store.add_result(f"j{i}", 0, "mesh", _arrays(i), {})
        store.add_result(f"j{i}", 1, "mesh", shared, {})
        store.set_state(f"j{i}", "finished")
    store.add_job("live", spec)  # queued: never pruned
    now = time.time()
    one = store.usage()["bytes"] // 5  # 4 own files + 1 shared
    stats = store.prune(max_age_s=3600, now=now + 7200, grace_s=0)
    assert stats["pruned_jobs"] == 4 and stats["files"] == 0
    assert not list(store.blob_dir.glob("*/*.npz"))
    with pytest.raises(ResultUnavailable):
        store.load_result(store.results("j0")[0])
    assert store.job("j0")["state"] == "finished"  # history stays

    store2 = Store(tmp_path / "b")
    for i in range(4):
        store2.add_job(f"j{i}", spec)
        store2.add_result(f"j{i}", 0, "mesh", _arrays(i), {})
        store2.add_result(f"j{i}", 1, "mesh", shared, {})
        store2.set_state(f"j{i}", "finished")
    stats = store2.prune(max_bytes=3 * one + one // 2, grace_s=0)
    assert stats["pruned_jobs"] == 2 and stats["bytes"] <= 3 * one + one // 2
    kept = [r for j in ("j2", "j3") for r in store2.results(j)]
    for rec in kept:  # the shared file is still there for the kept jobs
        store2.load_result(rec)


def test_garbage_collection_spares_young_unreferenced_files(tmp_path):
    store = Store(tmp_path)
    sha, _ = store.put_blob(_arrays(5))  # e.g. being written right now, record not yet inserted
    assert store.prune(collect=True)["removed_files"] == 0
    old = time.time() - 3600
    os.utime(store.blob_path(sha), (old, old))
    assert store.prune(collect=True)["removed_files"] == 1


def test_one_engine_per_data_dir(tmp_path):
    a = Store(tmp_path)
    a.acquire_lock()
    b = Store(tmp_path)
    with pytest.raises(EngineAlreadyRunning) as err:
        b.acquire_lock()
    assert err.value.code == "store.locked"
    a.close()
    b.acquire_lock()
    b.close()
