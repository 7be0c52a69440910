"""The job queue and the one worker thread that owns the device.

``JobManager`` validates and records jobs, orders them (priority, then FIFO), runs them
one at a time on its worker thread through the pipelines, and reports everything that
happens as events to a sink (the server fans them out to subscribed connections). It
knows nothing about sockets.

Guarantees the server builds on:

- a job's record is in the store (state ``queued``) before ``submit`` returns;
- a result's file and record are stored before its ``result`` event is emitted, and the
  job is recorded ``finished`` before its final result is emitted; likewise ``failed`` /
  ``cancelled`` are recorded before their terminal event; so a client told about a final
  state always finds it in the store;
- every job gets exactly one terminal event (final ``result``, ``error`` or ``cancelled``).

Events are ``(job_id, header, arrays)`` with headers built by ``engine.protocol`` (their
``req_id`` is null: they are pushed). The sink is called on the worker thread (or on the
thread that cancels a queued job) and must not block.
"""

from __future__ import annotations

import heapq
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from engine import protocol
from engine.errors import InvalidRequest, JobCancelled, LatentforgeError
from engine.pipelines import registry
from engine.pipelines.base import RESULT_KINDS, Pipeline, Result
from engine.server.store import FINAL_STATES, Store, StoredResult

log = logging.getLogger(__name__)

STOPPED_REASON = "engine stopped while the job was running"
MAX_PRIORITY = 1_000_000
EventSink = Callable[[str, dict, "Mapping[str, np.ndarray] | None"], None]
# Array names and dtypes each result kind must carry (optional ones are checked when present).
_REQUIRED = {"mesh": {"vertices": np.float32, "faces": np.int32},
             "points": {"points": np.float32},
             "images": {"images": np.uint8, "poses": np.float32}}
_OPTIONAL = {"normals": np.float32, "colors": np.uint8}


class JobNotFound(LatentforgeError):
    """No job has this id (or it was never recorded by this data directory)."""

    code = "job.not_found"
    advice = "List jobs with `latentforge jobs` (the engine keeps history in its data directory)."


class JobNotFinished(LatentforgeError):
    """Results were asked for a job that has none (still running, failed or cancelled)."""

    code = "job.not_finished"
    advice = "Wait for the job's final result event, or subscribe to it; failed and cancelled jobs have no results."


class PipelineFailed(LatentforgeError):
    """A pipeline raised an unexpected exception or returned malformed results."""

    code = "job.failed"
    advice = "This is a bug in the model's pipeline: the engine log has the traceback; try other parameters or another model."


class JobInterrupted(LatentforgeError):
    """The engine stopped (crash, kill, power loss) while the job was running."""

    code = "job.interrupted"
    advice = "Submit the job again."


class EngineStopping(LatentforgeError):
    """A job was submitted while the engine shuts down."""

    code = "engine.stopping"
    advice = "Start the engine again and resubmit."


@dataclass(order=False)
class Job:
    """A job known to the manager (queued or running)."""

    job_id: str
    task: str
    model: str
    priority: int
    seq: int
    spec: dict[str, Any]
    params: dict[str, Any]
    pipeline: Pipeline
    created: float
    state: str = "queued"
    cancel: threading.Event = field(default_factory=threading.Event)

    @property
    def key(self) -> tuple[int, int]:
        return (-self.priority, self.seq)


class Context:
    """``JobContext`` for one running job: progress with ETA, rate-limited previews, cancellation."""

    def __init__(self, job: Job, device: str, sink: EventSink, preview_interval: float) -> None:
        self.job = job
        self.device = device
        self.job_id = job.job_id
        self._sink = sink
        self._interval = preview_interval
        self._start = time.monotonic()
        self._stage = ""
        self._stage_start = self._start
        self._step, self._total = 0, 0
        self._last_preview = -float("inf")
        self.first_preview_s: float | None = None

    def progress(self, stage: str, step: int, total: int) -> None:
        """Emit a progress event (ETA from this stage's pace); raises ``JobCancelled`` if cancelled."""
        now = time.monotonic()
        if stage != self._stage:
            self._stage, self._stage_start = stage, now
        self._step, self._total = int(step), int(total)
        eta = None
        if 0 < step <= total:
            eta = (now - self._stage_start) / step * (total - step)
        self._sink(self.job_id, protocol.progress_event(self.job_id, stage, step, total, eta_s=eta,
                                                        elapsed_s=now - self._start), None)
        self.check_cancelled()

    def wants_preview(self, step: int) -> bool:
        """True when a preview now would be sent (at most ``preview_hz`` per second)."""
        return self._interval >= 0 and time.monotonic() - self._last_preview >= self._interval

    def preview(self, kind: str, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any] | None = None) -> None:
        """Send the current estimate; dropped when called faster than the preview rate."""
        if not self.wants_preview(self._step):
            return
        now = time.monotonic()
        self._last_preview = now
        if self.first_preview_s is None:
            self.first_preview_s = now - self._start
        self._sink(self.job_id, protocol.preview_event(self.job_id, kind, self._step, self._total, meta),
                   dict(arrays))

    def check_cancelled(self) -> None:
        """Raise ``JobCancelled`` when a client cancelled this job."""
        if self.job.cancel.is_set():
            raise JobCancelled(f"Job {self.job_id} was cancelled.")


def result_header(job: Mapping[str, Any], record: StoredResult, count: int, final: bool,
                  req_id: Any = None) -> dict[str, Any]:
    """The ``result`` header of a stored result; the same for live events and replays."""
    spec = job["spec"]
    meta = record.meta
    params = spec.get("params") or {}
    seed = meta.get("seed", params.get("seed"))
    header = protocol.result_event(
        job["job_id"], record.index, count, record.kind, model=spec.get("model", ""),
        prompt=meta.get("prompt", params.get("prompt")),
        seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
        transform=meta.get("transform"), meta=meta, final=final, req_id=req_id)
    header["sha256"] = record.sha256  # content address of the arrays (optional field)
    return header


def check_results(results: Any) -> list[Result]:
    """Check a pipeline's output; coerce same-kind dtypes (e.g. f64 -> f32); raise ``PipelineFailed``."""
    if not isinstance(results, (list, tuple)) or not results:
        raise PipelineFailed("The pipeline returned no results.")
    out = []
    for i, r in enumerate(results):
        if not isinstance(r, Result) or r.kind not in RESULT_KINDS:
            raise PipelineFailed(f"Result {i} is not a Result of kind {', '.join(RESULT_KINDS)}.")
        arrays = {}
        for name, arr in r.arrays.items():
            arr = np.asarray(arr)
            want = _REQUIRED[r.kind].get(name, _OPTIONAL.get(name))
            if want is not None and arr.dtype != want:
                w = np.dtype(want)
                if not (w.kind == arr.dtype.kind == "f" or (w.kind in "iu" and arr.dtype.kind in "iu")):
                    raise PipelineFailed(f"Result {i}: array {name!r} has dtype {arr.dtype}, expected {w}.")
                arr = arr.astype(w)
            arrays[name] = arr
        missing = set(_REQUIRED[r.kind]) - set(arrays)
        if missing:
            raise PipelineFailed(f"Result {i} ({r.kind}) lacks array(s) {', '.join(sorted(missing))}.")
        _check_shapes(i, r.kind, arrays)
        try:
            meta_json = json.dumps(r.meta, allow_nan=False, default=protocol.json_default)
        except (TypeError, ValueError) as exc:
            raise PipelineFailed(f"Result {i}: meta is not JSON-safe ({exc}).") from None
        out.append(Result(r.kind, arrays, json.loads(meta_json)))
    return out


class JobManager:
    """Queue + worker. Thread-safe; ``sink`` receives every job event."""

    def __init__(self, store: Store, device: str = "cpu", *, preview_hz: float = 5.0,
                 sink: EventSink | None = None, max_result_bytes: int | None = None,
                 max_result_age_s: float | None = None) -> None:
        self.store = store
        self.device = device
        self.preview_interval = 1.0 / preview_hz if preview_hz > 0 else -1.0
        self.sink: EventSink = sink or (lambda job_id, header, arrays: None)
        self.max_result_bytes = max_result_bytes
        self.max_result_age_s = max_result_age_s
        self._lock = threading.Condition()
        self._heap: list[tuple[tuple[int, int], str]] = []
        self._active: dict[str, Job] = {}
        self._running: Job | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.recovered: dict[str, list[str]] = {"failed": [], "requeued": []}

    # ---- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        """``recover()`` then ``start_worker()``."""
        self.recover()
        self.start_worker()

    def recover(self) -> list[str]:
        """Fail jobs a previous run left running, re-queue its queued ones, prune; return the re-queued ids.

        Call before ``start_worker`` so whoever tracks jobs can learn about the re-queued
        ones before any of their events.
        """
        failed, queued = self.store.recover(JobInterrupted(STOPPED_REASON).to_dict())
        self.recovered["failed"] = failed
        for row in queued:
            try:
                self._requeue(row)
                self.recovered["requeued"].append(row["job_id"])
            except LatentforgeError as exc:
                log.warning("job %s could not be re-queued: %s", row["job_id"], exc)
                self.store.set_state(row["job_id"], "failed", reason="re-queue after restart failed",
                                     error=exc.to_dict())
        if failed or queued:
            log.info("recovered: %d interrupted job(s) marked failed, %d re-queued",
                     len(failed), len(self.recovered["requeued"]))
        self.prune(collect=True, grace_s=0.0)
        return list(self.recovered["requeued"])

    def start_worker(self) -> None:
        """Start the worker thread that runs the queue."""
        self._thread = threading.Thread(target=self._worker, name="latentforge-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel queued and running jobs, wait (up to ``timeout``) for the worker to end.

        Before ``start_worker`` nothing has run: queued jobs are left queued for the next start.
        """
        if self._thread is None:
            return
        with self._lock:
            self._stopping = True
            queued = [j for j in self._active.values() if j.state == "queued"]
            if self._running is not None:
                self._running.cancel.set()
            self._lock.notify_all()
        for job in queued:
            self.cancel(job.job_id, reason="engine shut down")
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("the running job did not stop within %.0f s; it will be marked failed on next start",
                            timeout)

    def prune(self, *, collect: bool = False, grace_s: float = 600.0) -> dict[str, Any] | None:
        """Apply the size/age policy to stored results."""
        if self.max_result_bytes is None and self.max_result_age_s is None and not collect:
            return None
        stats = self.store.prune(self.max_result_bytes, self.max_result_age_s, collect=collect, grace_s=grace_s)
        if stats["pruned_jobs"] or stats["removed_files"]:
            log.info("pruned results: %s", stats)
        return stats

    # ---- requests -----------------------------------------------------------------

    def validate(self, spec: Mapping[str, Any], arrays: Mapping[str, np.ndarray] | None = None
                 ) -> tuple[dict[str, Any], dict[str, Any], Pipeline]:
        """Check a spec and let its pipeline normalize the params; return (spec, params, pipeline)."""
        spec = protocol.check_spec(spec)
        if not -MAX_PRIORITY <= spec["priority"] <= MAX_PRIORITY:
            raise InvalidRequest(f"'priority' must be between {-MAX_PRIORITY} and {MAX_PRIORITY}.")
        pipeline = registry.get_pipeline(spec["model"])
        registry.check_task(pipeline, spec["task"])
        params = dict(spec["params"])
        if "arrays" in params:
            raise InvalidRequest("'arrays' is reserved in params: send arrays in the frame and refer to them by name.")
        if arrays:
            params["arrays"] = dict(arrays)
        params = pipeline.validate(spec["task"], params)
        if not isinstance(params, dict):
            raise PipelineFailed(f"Pipeline {spec['model']!r} returned no params from validate().")
        return spec, params, pipeline

    def submit(self, spec: Mapping[str, Any], arrays: Mapping[str, np.ndarray] | None = None,
               client: str | None = None, job_id: str | None = None) -> tuple[str, int]:
        """Validate, record and queue a job; return (job id, position: 0 = next to run).

        ``job_id`` lets the caller pick the id (see ``new_job_id``) so it can prepare for the
        job's events before the worker may emit them.
        """
        spec, params, pipeline = self.validate(spec, arrays)
        stored_spec = dict(spec, params=_json_part(params, spec["params"]))
        job_id = job_id or new_job_id()
        with self._lock:
            if self._stopping:
                raise EngineStopping("The engine is shutting down.")
        created = time.time()
        seq = self.store.add_job(job_id, stored_spec, priority=spec["priority"], inputs=arrays or None,
                                 client=client, created=created)
        job = Job(job_id, spec["task"], spec["model"], spec["priority"], seq, stored_spec, params,
                  pipeline, created)
        with self._lock:
            stopping = self._stopping
            if not stopping:
                self._push(job)
                return job_id, self._position(job)
        # stop() ran while this job was being recorded: it gets the same fate as the queued ones.
        self.store.set_state(job_id, "cancelled", reason="engine shut down")
        self.sink(job_id, protocol.cancelled_event(job_id), None)
        return job_id, 0

    def cancel(self, job_id: str, reason: str = "cancelled by a client") -> str:
        """Cancel a job; return its state at this moment (a queued job is cancelled at once)."""
        with self._lock:
            job = self._active.get(job_id)
            if job is not None and job.state != "queued":
                if job.state == "running":
                    job.cancel.set()
                return job.state
            if job is not None:
                job.cancel.set()
                job.state = "cancelled"
                del self._active[job_id]
        if job is None:
            row = self.store.job(job_id)
            if row is None:
                raise JobNotFound(f"There is no job {job_id!r}.", details={"job_id": job_id})
            return row["state"]
        self.store.set_state(job_id, "cancelled", reason=reason)
        self.sink(job_id, protocol.cancelled_event(job_id), None)
        return "cancelled"

    def live_state(self, job_id: str) -> str | None:
        """``queued``/``running`` for a job this manager holds, else None (look in the store)."""
        with self._lock:
            job = self._active.get(job_id)
            return job.state if job else None

    def position(self, job_id: str) -> int | None:
        """How many queued jobs run before this one (None when not queued)."""
        with self._lock:
            job = self._active.get(job_id)
            return self._position(job) if job and job.state == "queued" else None

    def counts(self) -> dict[str, int]:
        """Queued and running job counts."""
        with self._lock:
            states = [j.state for j in self._active.values()]
        return {"queued": states.count("queued"), "running": states.count("running")}

    # ---- internals ----------------------------------------------------------------

    def _push(self, job: Job) -> None:
        self._active[job.job_id] = job
        heapq.heappush(self._heap, (job.key, job.job_id))
        self._lock.notify_all()

    def _position(self, job: Job) -> int:
        return sum(1 for j in self._active.values() if j.state == "queued" and j.key < job.key)

    def _requeue(self, row: Mapping[str, Any]) -> None:
        spec = row["spec"]
        inputs = self.store.job_inputs(row["job_id"])
        _, params, pipeline = self.validate(spec, inputs)
        job = Job(row["job_id"], spec["task"], spec["model"], int(row["priority"]), int(row["seq"]), spec,
                  params, pipeline, float(row["created"]))
        with self._lock:
            self._push(job)

    def _next(self) -> Job | None:
        with self._lock:
            while True:
                while self._heap and self._heap[0][1] not in self._active:
                    heapq.heappop(self._heap)  # cancelled while queued
                if self._stopping:
                    return None
                if self._heap:
                    _, job_id = heapq.heappop(self._heap)
                    job = self._active[job_id]
                    job.state = "running"
                    self._running = job
                    return job
                self._lock.wait()

    def _worker(self) -> None:
        while True:
            job = self._next()
            if job is None:
                return
            try:
                self._run(job)
            except Exception:  # the store itself failed: keep serving the other jobs
                log.exception("job %s could not be recorded", job.job_id)
            finally:
                with self._lock:
                    self._active.pop(job.job_id, None)
                    self._running = None
            try:
                self.prune()
            except Exception:
                log.exception("pruning results failed")

    def _run(self, job: Job) -> None:
        self.store.set_state(job.job_id, "running")
        ctx = Context(job, self.device, self.sink, self.preview_interval)
        try:
            ctx.progress("start", 0, 1)
            results = check_results(job.pipeline.run(job.task, job.params, ctx))
            ctx.check_cancelled()
        except JobCancelled:
            self._finish(job, "cancelled", reason="cancelled" if not self._stopping else "engine shut down")
            return
        except LatentforgeError as exc:
            log.info("job %s failed: %s", job.job_id, exc)
            self._finish(job, "failed", error=exc)
            return
        except Exception as exc:
            log.error("job %s: pipeline %s raised", job.job_id, job.model, exc_info=True)
            self._finish(job, "failed", error=PipelineFailed(
                f"The {job.model} pipeline failed: {type(exc).__name__}: {exc}"))
            return
        row = {"job_id": job.job_id, "spec": job.spec}
        count = len(results)
        records = []
        for i, r in enumerate(results):
            records.append(self.store.add_result(job.job_id, i, r.kind, r.arrays, r.meta))
            if i < count - 1:
                self.sink(job.job_id, result_header(row, records[-1], count, False), r.arrays)
        self.store.set_state(job.job_id, "finished")
        with self._lock:
            job.state = "finished"
        self.sink(job.job_id, result_header(row, records[-1], count, True), results[-1].arrays)

    def _finish(self, job: Job, state: str, *, reason: str | None = None,
                error: LatentforgeError | None = None) -> None:
        assert state in FINAL_STATES
        self.store.set_state(job.job_id, state, reason=reason or (error.message if error else None),
                             error=error.to_dict() if error else None)
        with self._lock:
            job.state = state
        if error is not None:
            self.sink(job.job_id, protocol.error_event(error, job_id=job.job_id), None)
        else:
            self.sink(job.job_id, protocol.cancelled_event(job.job_id), None)


def new_job_id() -> str:
    """A fresh opaque job id."""
    return uuid.uuid4().hex[:16]


def _check_shapes(i: int, kind: str, arrays: Mapping[str, np.ndarray]) -> None:
    """Shapes the clients rely on: N x 3 coordinates, M x 3 faces indexing them, K x H x W x 4 images."""
    def bad(what: str) -> PipelineFailed:
        return PipelineFailed(f"Result {i} ({kind}): {what}.")
    for name in ("vertices", "faces", "points", "normals"):
        a = arrays.get(name)
        if a is not None and (a.ndim != 2 or a.shape[1] != 3):
            raise bad(f"{name!r} has shape {a.shape}, expected N x 3")
    if kind == "mesh":
        n, faces = len(arrays["vertices"]), arrays["faces"]
        if faces.size and (faces.min() < 0 or faces.max() >= n):
            raise bad("faces index vertices that do not exist")
    if kind == "images":
        images, poses = arrays["images"], arrays["poses"]
        if images.ndim != 4 or images.shape[3] != 4 or poses.shape != (len(images), 4, 4):
            raise bad(f"images {images.shape} / poses {poses.shape}, expected K x H x W x 4 and K x 4 x 4")


def _json_part(params: Mapping[str, Any], fallback: Mapping[str, Any]) -> dict[str, Any]:
    """Normalized params without the arrays, when JSON-safe; else the client's own params."""
    clean = {k: v for k, v in params.items() if k != "arrays"}
    try:
        return json.loads(json.dumps(clean, allow_nan=False))
    except (TypeError, ValueError):
        return dict(fallback)
