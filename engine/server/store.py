"""Persistence of jobs and results: SQLite (WAL) for records, content-addressed files for arrays.

Layout of the data directory::

    engine.sqlite3           jobs, state transitions, result records (WAL mode)
    engine.lock              held (flock) by the one engine using this directory
    blobs/ab/<sha256>.npz    result arrays and job input arrays, one file per content

A blob's name is the SHA-256 of its *content*: for every array in name order, a small
JSON descriptor (name, little-endian dtype, shape) followed by its raw C-order bytes. The
same hash is recomputed when a blob is read, so a damaged file is reported, never served.
Files are ``.npz`` archives written without pickles (and read with ``allow_pickle=False``);
their zip entries carry a fixed timestamp so equal content gives byte-equal files.

Why a hand-rolled store rather than a library: the needs are small (three tables, one
writer thread plus readers) and the standard library's sqlite3 + zipfile + numpy's own
``.npy`` writer cover them; an ORM or key-value store would add a dependency for nothing.

Thread safety: one connection shared by the event loop thread and the job worker, every
statement under one lock. Statements are short; large file I/O happens outside the lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sqlite3
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from engine.errors import LatentforgeError
from engine.fileio import replace_atomically

FINAL_STATES = ("finished", "failed", "cancelled")
STATES = ("queued", "running") + FINAL_STATES
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id    TEXT PRIMARY KEY,
    seq       INTEGER NOT NULL,
    state     TEXT NOT NULL,
    task      TEXT NOT NULL,
    model     TEXT NOT NULL,
    priority  INTEGER NOT NULL DEFAULT 0,
    spec      TEXT NOT NULL,
    inputs    TEXT,
    client    TEXT,
    created   REAL NOT NULL,
    started   REAL,
    finished  REAL,
    error     TEXT,
    n_results INTEGER NOT NULL DEFAULT 0,
    pruned    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE INDEX IF NOT EXISTS jobs_seq ON jobs(seq);
CREATE TABLE IF NOT EXISTS transitions (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    state  TEXT NOT NULL,
    time   REAL NOT NULL,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS transitions_job ON transitions(job_id);
CREATE TABLE IF NOT EXISTS results (
    job_id  TEXT NOT NULL,
    idx     INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    sha256  TEXT NOT NULL,
    nbytes  INTEGER NOT NULL,
    meta    TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (job_id, idx)
);
CREATE INDEX IF NOT EXISTS results_sha ON results(sha256);
"""


class StoreError(LatentforgeError):
    """The data directory cannot be used."""

    code = "store.error"
    advice = "Check the engine's data directory (--data-dir): free space and permissions."


class EngineAlreadyRunning(StoreError):
    """Another engine process holds the data directory."""

    code = "store.locked"
    advice = ("Another engine is already using this data directory: connect to it "
              "(--connect ADDRESS) or start this one with another --data-dir.")


class ResultUnavailable(LatentforgeError):
    """A stored result was pruned, removed or damaged."""

    code = "result.unavailable"
    advice = "Generate it again; old results are pruned by the engine's size/age policy (see `latentforge prune --help`)."


@dataclass
class StoredResult:
    """One stored result record (arrays are loaded separately with ``load_result``)."""

    job_id: str
    index: int
    kind: str
    sha256: str
    nbytes: int
    meta: dict[str, Any]


def _canonical(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Contiguous little-endian copies where needed (no copy when already so)."""
    out = {}
    for name in sorted(arrays):
        arr = np.asarray(arrays[name])
        if arr.dtype.hasobject or arr.dtype.fields is not None:
            raise StoreError(f"Array {name!r} has dtype {arr.dtype}, which cannot be stored.",
                             "Only plain numeric and bool arrays can be results.")
        if arr.dtype.byteorder == ">":
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        out[name] = np.ascontiguousarray(arr)
    return out


def content_hash(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 of arrays' names, dtypes, shapes and bytes (the blob's address)."""
    h = hashlib.sha256()
    for name, arr in _canonical(arrays).items():
        desc = json.dumps({"name": name, "dtype": arr.dtype.str, "shape": list(arr.shape)},
                          sort_keys=True).encode()
        h.update(len(desc).to_bytes(4, "little"))
        h.update(desc)
        h.update(arr.reshape(-1).view(np.uint8) if arr.size else b"")
    return h.hexdigest()


class Store:
    """Jobs, transitions and results of one engine data directory."""

    def __init__(self, data_dir: Path | str) -> None:
        self.data_dir = Path(data_dir)
        self.blob_dir = self.data_dir / "blobs"
        try:
            # Results are the user's assets: new directories are private to the user.
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.blob_dir.mkdir(exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StoreError(f"Cannot create the data directory {self.data_dir}: {exc.strerror}.") from exc
        self._lock = threading.RLock()
        self._lock_fd: int | None = None
        self._db = sqlite3.connect(self.data_dir / "engine.sqlite3", isolation_level=None,
                                   check_same_thread=False, timeout=30)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)

    # ---- process lock -------------------------------------------------------------

    def acquire_lock(self) -> None:
        """Take the data directory for this process; raise ``EngineAlreadyRunning`` if taken.

        An flock dies with its process, so an engine killed with SIGKILL never leaves a
        stale lock behind.
        """
        fd = os.open(self.data_dir / "engine.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise EngineAlreadyRunning(f"Another engine is using {self.data_dir}.") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def close(self) -> None:
        """Close the database and release the directory lock."""
        with self._lock:
            self._db.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # ---- blobs --------------------------------------------------------------------

    def blob_path(self, sha: str) -> Path:
        return self.blob_dir / sha[:2] / f"{sha}.npz"

    def put_blob(self, arrays: Mapping[str, np.ndarray]) -> tuple[str, int]:
        """Write ``arrays`` as a content-addressed file; return (sha256, file size)."""
        canon = _canonical(arrays)
        sha = content_hash(canon)
        path = self.blob_path(sha)
        if path.exists():
            # Refresh the mtime so a concurrent garbage collection leaves it alone.
            os.utime(path)
            return sha, path.stat().st_size
        path.parent.mkdir(exist_ok=True)

        def write(out) -> None:
            with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
                for name, arr in canon.items():
                    info = zipfile.ZipInfo(name + ".npy", date_time=_ZIP_EPOCH)
                    with zf.open(info, "w", force_zip64=True) as fh:
                        np.lib.format.write_array(fh, arr, allow_pickle=False)

        try:
            replace_atomically(path, write)
        except OSError as exc:
            raise StoreError(f"Cannot write a result file in {self.blob_dir}: {exc.strerror}.") from exc
        return sha, path.stat().st_size

    def get_blob(self, sha: str) -> dict[str, np.ndarray]:
        """Read a blob back (no pickles) and check its content hash."""
        path = self.blob_path(sha)
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
        except FileNotFoundError:
            raise ResultUnavailable(f"The stored file {path.name} is missing.") from None
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise ResultUnavailable(f"The stored file {path.name} cannot be read ({exc}).") from exc
        if content_hash(arrays) != sha:
            raise ResultUnavailable(f"The stored file {path.name} is damaged (checksum mismatch).")
        return arrays

    # ---- jobs ---------------------------------------------------------------------

    def add_job(self, job_id: str, spec: Mapping[str, Any], *, priority: int = 0,
                inputs: Mapping[str, np.ndarray] | None = None, client: str | None = None,
                created: float | None = None) -> int:
        """Record a new queued job (its input arrays as a blob); return its FIFO sequence number."""
        inputs_sha = self.put_blob(inputs)[0] if inputs else None
        now = created or time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                seq = self._db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs").fetchone()[0]
                self._db.execute(
                    "INSERT INTO jobs (job_id, seq, state, task, model, priority, spec, inputs, client, created)"
                    " VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?)",
                    (job_id, seq, str(spec.get("task")), str(spec.get("model")), int(priority),
                     json.dumps(spec), inputs_sha, client, now))
                self._db.execute("INSERT INTO transitions (job_id, state, time) VALUES (?, 'queued', ?)",
                                 (job_id, now))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return seq

    def set_state(self, job_id: str, state: str, *, reason: str | None = None,
                  error: Mapping[str, Any] | None = None) -> None:
        """Move a job to ``state`` and record the transition (with timestamps)."""
        if state not in STATES:
            raise ValueError(state)
        now = time.time()
        col = {"running": "started", "finished": "finished", "failed": "finished",
               "cancelled": "finished"}.get(state)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                sets = "state = ?" + (f", {col} = ?" if col else "") + (", error = ?" if error else "")
                args: list[Any] = [state] + ([now] if col else []) + ([json.dumps(dict(error))] if error else [])
                self._db.execute(f"UPDATE jobs SET {sets} WHERE job_id = ?", (*args, job_id))
                self._db.execute("INSERT INTO transitions (job_id, state, time, reason) VALUES (?, ?, ?, ?)",
                                 (job_id, state, now, reason))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def job(self, job_id: str) -> dict[str, Any] | None:
        """A job record as a dict (``spec``/``error`` decoded), or None."""
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return _job_dict(row) if row else None

    def jobs(self, limit: int = 50, states: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Newest jobs first, optionally only those in ``states``."""
        sql, args = "SELECT * FROM jobs", []
        states = list(states or [])
        if states:
            sql += f" WHERE state IN ({','.join('?' * len(states))})"
            args += states
        sql += " ORDER BY seq DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, (*args, int(limit))).fetchall()
        return [_job_dict(r) for r in rows]

    def transitions(self, job_id: str) -> list[dict[str, Any]]:
        """Every state a job went through, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT state, time, reason FROM transitions WHERE job_id = ? ORDER BY id",
                                    (job_id,)).fetchall()
        return [dict(r) for r in rows]

    def job_inputs(self, job_id: str) -> dict[str, np.ndarray]:
        """The input arrays a job was submitted with ({} when none)."""
        job = self.job(job_id)
        if not job or not job["inputs"]:
            return {}
        return self.get_blob(job["inputs"])

    # ---- results ------------------------------------------------------------------

    def add_result(self, job_id: str, index: int, kind: str, arrays: Mapping[str, np.ndarray],
                   meta: Mapping[str, Any]) -> StoredResult:
        """Write the arrays' file, then the record; only then may the result be announced."""
        sha, nbytes = self.put_blob(arrays)
        meta_json = json.dumps(dict(meta), allow_nan=False)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT OR REPLACE INTO results (job_id, idx, kind, sha256, nbytes, meta, created)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)", (job_id, index, kind, sha, nbytes, meta_json, time.time()))
                self._db.execute("UPDATE jobs SET n_results = (SELECT COUNT(*) FROM results WHERE job_id = ?)"
                                 " WHERE job_id = ?", (job_id, job_id))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return StoredResult(job_id, index, kind, sha, nbytes, dict(meta))

    def results(self, job_id: str) -> list[StoredResult]:
        """A job's result records in index order."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM results WHERE job_id = ? ORDER BY idx", (job_id,)).fetchall()
        return [StoredResult(r["job_id"], r["idx"], r["kind"], r["sha256"], r["nbytes"], json.loads(r["meta"]))
                for r in rows]

    def load_result(self, record: StoredResult) -> dict[str, np.ndarray]:
        """The arrays of a stored result, checked against their hash."""
        job = self.job(record.job_id)
        if job and job["pruned"]:
            raise ResultUnavailable(f"The results of job {record.job_id} were pruned.")
        return self.get_blob(record.sha256)

    # ---- recovery and pruning -----------------------------------------------------

    def recover(self, error: Mapping[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
        """After a crash: fail jobs left ``running`` with ``error`` (an error dict); return
        (failed ids, queued jobs in run order).

        Also removes half-written temporary files left by a killed writer.
        """
        for tmp in self.blob_dir.glob("*/*.tmp"):
            tmp.unlink(missing_ok=True)
        with self._lock:
            running = [r["job_id"] for r in self._db.execute("SELECT job_id FROM jobs WHERE state = 'running'")]
        for job_id in running:
            self.set_state(job_id, "failed", reason=str(error.get("message")), error=error)
        with self._lock:
            rows = self._db.execute("SELECT * FROM jobs WHERE state = 'queued' ORDER BY priority DESC, seq").fetchall()
        return running, [_job_dict(r) for r in rows]

    def usage(self) -> dict[str, Any]:
        """Bytes and files held by jobs that are not pruned."""
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) AS n, COALESCE(SUM(nbytes), 0) AS b FROM (SELECT DISTINCT r.sha256, r.nbytes"
                " FROM results r JOIN jobs j ON j.job_id = r.job_id WHERE j.pruned = 0)").fetchone()
        return {"files": row["n"], "bytes": row["b"]}

    def prune(self, max_bytes: int | None = None, max_age_s: float | None = None,
              now: float | None = None, grace_s: float = 600.0, collect: bool = False) -> dict[str, Any]:
        """Drop results of final jobs older than ``max_age_s``, then oldest first until under ``max_bytes``.

        Job records and their history stay (marked ``pruned``); only the files go, and a
        file shared with a job that is kept stays too. Unreferenced files younger than
        ``grace_s`` are kept: they may belong to a record being written right now. Files are
        only scanned when something was pruned, or when ``collect`` asks for it (at start).
        """
        now = now or time.time()
        pruned: list[str] = []
        finals = "('finished', 'failed', 'cancelled')"
        with self._lock:
            if max_age_s is not None:
                rows = self._db.execute(f"SELECT job_id FROM jobs WHERE pruned = 0 AND state IN {finals}"
                                        " AND finished < ?", (now - max_age_s,)).fetchall()
                pruned += [r["job_id"] for r in rows]
                self._mark_pruned(pruned)
            if max_bytes is not None:
                total = self.usage()["bytes"]
                if total > max_bytes:
                    rows = self._db.execute(f"SELECT job_id FROM jobs WHERE pruned = 0 AND state IN {finals}"
                                            " ORDER BY finished, seq").fetchall()
                    for r in rows:
                        if total <= max_bytes:
                            break
                        self._mark_pruned([r["job_id"]])
                        pruned.append(r["job_id"])
                        total = self.usage()["bytes"]
            removed = self._collect_garbage(now - grace_s) if (pruned or collect) else 0
        return {"pruned_jobs": len(pruned), "removed_files": removed, **self.usage()}

    def _mark_pruned(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            self._db.execute("UPDATE jobs SET pruned = 1 WHERE job_id = ?", (job_id,))

    def _collect_garbage(self, older_than: float) -> int:
        """Delete blob files no kept job refers to, last modified before ``older_than``."""
        keep = {r[0] for r in self._db.execute(
            "SELECT r.sha256 FROM results r JOIN jobs j ON j.job_id = r.job_id WHERE j.pruned = 0")}
        keep |= {r[0] for r in self._db.execute("SELECT inputs FROM jobs WHERE inputs IS NOT NULL AND pruned = 0")}
        removed = 0
        for path in self.blob_dir.glob("*/*.npz"):
            try:
                if path.stem not in keep and path.stat().st_mtime < older_than:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                pass
        return removed


def _job_dict(row: sqlite3.Row) -> dict[str, Any]:
    d = dict(row)
    d["spec"] = json.loads(d["spec"])
    d["error"] = json.loads(d["error"]) if d["error"] else None
    d["pruned"] = bool(d["pruned"])
    return d
