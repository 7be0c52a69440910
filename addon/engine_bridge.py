"""The add-on's link to the engine: network work on a worker thread, scene work on the main thread.

Threads and queues:

- a *worker* thread runs every blocking call (start the engine, connect, submit,
  cancel, history, re-import); it never touches bpy and reports back by posting
  callbacks into ``_inbox``;
- the engine client's own reader thread puts pushed events in ``client.events``;
- the main thread drains both from a ``bpy.app.timers`` timer (``tick``) with a time
  budget per tick; previews for the same job are coalesced (only the newest is built),
  and at most one final result is built per tick.

Everything the UI shows (state, device, queue, problem, jobs) lives here and is only
changed on the main thread.
"""

from __future__ import annotations

import atexit
import queue
import threading
import time
import tomllib
import traceback
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import bpy

from . import engine_process
from . import result_handlers
from ._link import client as lf_client
from ._link import protocol
from ._link.errors import LatentforgeError
from .jobs import FINAL_STATES, Job, JobList

TICK_BUDGET_S = 0.008
ACTIVE_INTERVAL_S = 0.05
IDLE_INTERVAL_S = 0.25
WATCH_INTERVAL_S = 1.0
POLL_INTERVAL_S = 3.0
MAX_RESTARTS_PER_MINUTE = 3


def _addon_version() -> str:
    try:
        with open(Path(__file__).with_name("blender_manifest.toml"), "rb") as fh:
            return str(tomllib.load(fh).get("version", "0.0.0"))
    except OSError:
        # Running from the source tree, where the manifest sits at the repository root.
        try:
            with open(Path(__file__).resolve().parents[1] / "blender_manifest.toml", "rb") as fh:
                return str(tomllib.load(fh).get("version", "0.0.0"))
        except OSError:
            return "0.0.0"


ADDON_VERSION = _addon_version()
CLIENT_NAME = f"latentforge-blender {ADDON_VERSION}"


@dataclass
class EngineSettings:
    """What the worker needs to start or reach an engine (copied from the preferences)."""

    mode: str = "LOCAL"          # LOCAL: start our own engine; REMOTE: connect to a running one
    python: str = ""
    data_dir: str = ""
    device: str = "auto"
    address: str = ""
    token: str = ""
    token_file: str = ""
    auto_restart: bool = True
    start_timeout_s: float = 180.0


class TickStats:
    """Duration of every timer tick, by what it did (for the 20 ms goal while streaming)."""

    def __init__(self, keep: int = 20000) -> None:
        self.samples: deque[tuple[float, str]] = deque(maxlen=keep)

    def add(self, seconds: float, kind: str) -> None:
        self.samples.append((seconds, kind))

    def reset(self) -> None:
        self.samples.clear()

    def summary(self) -> dict[str, Any]:
        """Counts and max/p95 in milliseconds, overall and per kind (idle, events, preview, result)."""
        out: dict[str, Any] = {"ticks": len(self.samples)}
        kinds = sorted({k for _, k in self.samples})
        for kind in ["all", *kinds]:
            values = sorted(s for s, k in self.samples if kind == "all" or k == kind)
            if not values:
                continue
            out[kind] = {"ticks": len(values), "max_ms": round(values[-1] * 1e3, 3),
                         "p95_ms": round(values[min(len(values) - 1, int(0.95 * len(values)))] * 1e3, 3),
                         "mean_ms": round(sum(values) / len(values) * 1e3, 3)}
        return out


class Bridge:
    """One per Blender session (``BRIDGE``)."""

    def __init__(self) -> None:
        self.jobs = JobList()
        self.process = engine_process.EngineProcess()
        self.settings = EngineSettings()
        self.client: lf_client.EngineClient | None = None  # assigned on the worker thread only
        self.state = "disconnected"     # disconnected | starting | connecting | connected | lost | error
        self.address = ""
        self.owns_process = False
        self.device = ""
        self.server = ""
        self.models: list[dict[str, Any]] = []
        self.history: list[dict[str, Any]] = []
        self.engine_counts: dict[str, int] = {}
        self.problem: dict[str, str] | None = None
        self.messages: deque[dict[str, Any]] = deque(maxlen=50)
        self.last_error: dict[str, Any] | None = None
        self.tick_stats = TickStats()
        self.populate_batches: dict[str, dict[str, Any]] = {}
        self._inbox: queue.Queue = queue.Queue()
        self._commands: queue.Queue = queue.Queue()
        self._backlog: deque[tuple] = deque()
        self._preview_counts: dict[str, int] = {}
        self._orphans: dict[str, list] = {}
        self._worker: threading.Thread | None = None
        self._busy = 0                  # commands queued or running on the worker
        self._restarts: deque[float] = deque(maxlen=MAX_RESTARTS_PER_MINUTE)
        self._last_watch = 0.0
        self._last_poll = 0.0
        self._poll_in_flight = False
        self._closing_client = False

    # ================================================================ worker thread

    def _ensure_worker(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._worker_loop, name="latentforge-bridge", daemon=True)
            self._worker.start()

    def _worker_loop(self) -> None:
        while True:
            item = self._commands.get()
            if item is None:
                return
            fn, args = item
            try:
                fn(*args)
            except Exception as exc:  # a failing command must not kill the worker
                self._post(self._on_worker_error, fn.__name__, exc, traceback.format_exc())
            finally:
                self._post(self._command_done)

    def _run_in_worker(self, fn: Callable, *args: Any) -> None:
        self._ensure_worker()
        self._busy += 1
        self._commands.put((fn, args))

    def _post(self, fn: Callable, *args: Any) -> None:
        """Have ``fn(*args)`` run on the main thread at the next tick."""
        self._inbox.put((fn, args))

    @property
    def busy(self) -> bool:
        """True while the worker has commands queued or running (start, connect, submit...)."""
        return self._busy > 0

    # ---- worker-side commands (no bpy in here) ----------------------------------

    def _w_close_client(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            self._closing_client = True
            try:
                client.close()
            finally:
                self._closing_client = False

    def _w_start_local(self, settings: EngineSettings) -> None:
        self._w_close_client()
        if self.process.running:
            self.process.stop()
        python = settings.python
        if not python:
            found = engine_process.detect_python()
            if found is None:
                raise engine_process.EngineStartError(
                    "No Python with the Latentforge engine installed was found.",
                    "Set 'Engine Python' in the add-on preferences to the python of the venv where "
                    "`pip install latentforge` (or `make setup`) was run.")
            python = found[0]
            self._post(self._on_python_detected, python)
        self.process.start(python, settings.data_dir or None, device=settings.device)
        self._post(self._set_state, "starting", None)
        address = self.process.wait_ready(settings.start_timeout_s)
        self._w_connect(address, settings, owned=True)

    def _w_connect(self, address: str, settings: EngineSettings, owned: bool) -> None:
        self._w_close_client()
        self._post(self._set_state, "connecting", None)
        client = lf_client.EngineClient(address, token=settings.token or None,
                                        token_file=settings.token_file or None, client_name=CLIENT_NAME)
        try:
            welcome = client.connect(timeout=10.0)
            models = client.models()
        except BaseException:
            client.close()  # a half-open client would keep reconnecting in the background
            raise
        self.client = client
        self._post(self._on_connected, address, welcome, models, owned)

    def _w_resubscribe(self, job_ids: list[str]) -> None:
        client = self.client
        for job_id in job_ids:
            try:
                state = client.subscribe(job_id)
            except LatentforgeError as exc:
                self._post(self._on_job_error_dict, job_id, _error_dict(exc))
                continue
            self._post(self._on_subscribed, job_id, state)

    def _w_stop(self, shutdown: bool) -> None:
        client = self.client
        if shutdown and client is not None and client.connected:
            try:
                client.shutdown(timeout=5.0)
            except LatentforgeError:
                pass  # the process is stopped below either way
        self._w_close_client()
        self.process.stop()
        self._post(self._set_state, "disconnected", None)

    def _w_disconnect(self) -> None:
        self._w_close_client()
        self._post(self._set_state, "disconnected", None)

    def _w_submit(self, key: str, spec: dict, arrays: dict | None) -> None:
        try:
            job_id = self._require_client().submit(spec, arrays)
        except LatentforgeError as exc:
            self._post(self._on_submit_failed, key, _error_dict(exc))
            return
        self._post(self._on_accepted, key, job_id)

    def _w_cancel(self, job_id: str) -> None:
        client = self._require_client()
        # The job's subscribers get its terminal event; the ack's state is only informative.
        client.cancel(job_id)

    def _w_models(self) -> None:
        models = self._require_client().models()
        self._post(self._on_models, models)

    def _w_history(self, limit: int) -> None:
        jobs = self._require_client().jobs(limit=limit)
        self._post(self._on_history, jobs)

    def _w_poll(self) -> None:
        try:
            client = self.client
            if client is None or not client.connected:
                return
            active = client.jobs(limit=1000, state=["queued", "running"], timeout=10.0)
            counts: dict[str, int] = {}
            for row in active:
                counts[row.get("state", "")] = counts.get(row.get("state", ""), 0) + 1
            self._post(self._on_counts, counts)
        except LatentforgeError:
            pass  # connection trouble is reported by the client's connection events
        finally:
            self._post(self._poll_done)

    def _w_result(self, key: str, job_id: str) -> None:
        try:
            messages = self._require_client().result(job_id, timeout=120.0)
        except LatentforgeError as exc:
            self._post(self._on_submit_failed, key, _error_dict(exc))
            return
        self._post(self._on_reimport, key, messages)

    def _require_client(self) -> lf_client.EngineClient:
        client = self.client
        if client is None:
            raise lf_client.ConnectionFailed("Not connected to an engine.",
                                             "Start the engine or connect to one in the add-on preferences.")
        return client

    # ================================================================ main-thread API

    @property
    def connected(self) -> bool:
        return self.state == "connected"

    def start_local(self, settings: EngineSettings) -> None:
        """Start (or restart) our own engine and connect to it (asynchronous)."""
        self.settings = settings
        self.problem = None
        self._set_state("starting", None)
        self._mark_active_jobs_lost()
        self._run_in_worker(self._w_start_local, settings)

    def connect(self, settings: EngineSettings) -> None:
        """Connect to a running engine at ``settings.address`` (asynchronous)."""
        self.settings = settings
        self.problem = None
        self._set_state("connecting", None)
        self._run_in_worker(self._w_connect, settings.address, settings, False)

    def stop(self) -> None:
        """Stop our engine (asking it to shut down cleanly), or just disconnect from a remote one."""
        self._set_state("disconnected", None)
        for job in self.jobs.active():
            # The engine cancels what it has not finished when asked to shut down.
            result_handlers.discard(self, job)
            self._job_ended(job, "cancelled")
        if self.owns_process or self.process.running:
            self._run_in_worker(self._w_stop, True)
        else:
            self._run_in_worker(self._w_disconnect)

    def restart(self) -> None:
        self.start_local(self.settings)

    def refresh_models(self) -> None:
        if self.client is not None:
            self._run_in_worker(self._w_models)

    def refresh_history(self, limit: int = 50) -> None:
        if self.client is not None:
            self._run_in_worker(self._w_history, limit)

    def submit(self, job: Job, arrays: dict | None = None) -> Job:
        """Record ``job`` and send it; events then arrive through ``tick``."""
        self.jobs.add(job)
        if self.client is None or not self.connected:
            self._on_submit_failed(job.key, {
                "code": "connection.failed", "message": "Not connected to an engine.",
                "advice": "Start the engine (or connect to one) in the add-on preferences."})
            return job
        self._run_in_worker(self._w_submit, job.key, job.spec, arrays)
        return job

    def cancel(self, job: Job) -> None:
        if job.state in FINAL_STATES:
            return
        if job.job_id is None:
            job.context["cancel_requested"] = True
            return
        if self.client is None:
            self._job_ended(job, "cancelled")
            return
        self._run_in_worker(self._w_cancel, job.job_id)

    def reimport(self, job_id: str, spec: dict) -> Job:
        """Fetch a finished job's stored results again and build them at the 3D cursor."""
        label = _spec_label(spec)
        job = Job("reimport", dict(spec), f"{label} (re-import)",
                  context={"cursor": tuple(bpy.context.scene.cursor.location), "spacing": 2.5,
                           "source_job": job_id})
        job.state = "queued"
        self.jobs.add(job)
        self._run_in_worker(self._w_result, job.key, job_id)
        return job

    def model_entries(self, task: str) -> list[dict[str, Any]]:
        """Models whose ``task`` is available now."""
        return [m for m in self.models if m.get("available") and (m.get("tasks") or {}).get(task, {}).get("available")]

    def task_unavailable_reason(self, task: str) -> str:
        """Why no model can run ``task`` (from the engine's ``models``), or "" when one can."""
        if not self.models:
            return "not connected to an engine"
        if self.model_entries(task):
            return ""
        reasons = []
        for m in self.models:
            info = (m.get("tasks") or {}).get(task) or {}
            why = info.get("reason") or m.get("reason") or "unavailable"
            reasons.append(f"{m.get('name')}: {why}")
        return "; ".join(reasons)

    def report(self, level: str, message: str, advice: str = "", code: str = "") -> None:
        """Tell the user: message list (shown in the panel), console, and a popup in the UI."""
        entry = {"time": time.time(), "level": level, "message": message, "advice": advice, "code": code}
        self.messages.append(entry)
        print(f"Latentforge {level.lower()}: {message}" + (f" ({advice})" if advice else ""))
        if level == "ERROR":
            self.last_error = entry
            _popup(message, advice)
        _redraw()

    # ================================================================ main-thread tick

    def tick(self) -> float:
        """Drain the queues within the time budget; return the delay until the next tick."""
        t0 = time.perf_counter()
        kind = "idle"
        try:
            kind = self._tick(t0)
        except Exception:  # the timer must survive anything
            traceback.print_exc()
            kind = "error"
        self.tick_stats.add(time.perf_counter() - t0, kind)
        busy = (self._backlog or not self._inbox.empty() or self.busy
                or any(j.state in ("submitting", "queued", "running") for j in self.jobs.active()))
        return ACTIVE_INTERVAL_S if busy else IDLE_INTERVAL_S

    def _tick(self, t0: float) -> str:
        kind = "idle"
        deadline = t0 + TICK_BUDGET_S
        while time.perf_counter() < deadline:
            try:
                fn, args = self._inbox.get_nowait()
            except queue.Empty:
                break
            fn(*args)
            kind = "events"
        client = self.client
        if client is not None:
            while True:
                try:
                    msg = client.events.get_nowait()
                except queue.Empty:
                    break
                if client is not self.client:
                    break
                self._enqueue(("event", msg))
        while self._backlog and time.perf_counter() < deadline:
            item = self._backlog[0]
            heavy = item[0] in ("event", "job_event") and item[-1].op == "result"
            if heavy and kind in ("preview", "result"):
                break  # one big build per tick keeps ticks short
            self._backlog.popleft()
            done = self._handle(item)
            if done == "result":
                kind = "result"
                break
            if done == "preview" or kind == "idle":
                kind = done or kind
        now = time.monotonic()
        if now - self._last_watch >= WATCH_INTERVAL_S:
            self._last_watch = now
            self._watch_process()
        if self.connected and not self._poll_in_flight and now - self._last_poll >= POLL_INTERVAL_S:
            self._last_poll = now
            self._poll_in_flight = True
            self._run_in_worker(self._w_poll)
        return kind

    def _enqueue(self, item: tuple) -> None:
        msg = item[-1]
        if msg.op == "preview" and msg.job_id:
            self._preview_counts[msg.job_id] = self._preview_counts.get(msg.job_id, 0) + 1
        self._backlog.append(item)

    def _handle(self, item: tuple) -> str:
        if item[0] == "job_event":
            job = self.jobs.get(item[1])
            return self._job_event(job, item[2]) if job is not None else ""
        msg = item[1]
        if msg.op == "connection":
            self._on_connection(msg)
            return "events"
        if msg.op == "preview" and msg.job_id:
            left = self._preview_counts.get(msg.job_id, 1) - 1
            self._preview_counts[msg.job_id] = left
            if left > 0:
                return "events"  # a newer preview of this job is already queued
        job = self.jobs.by_id(msg.job_id)
        if job is None:
            if msg.job_id and msg.op in ("progress", "preview", "result", "error", "cancelled"):
                # Events can overtake the submit reply; keep them until the job id is known.
                self._orphans.setdefault(msg.job_id, []).append(msg)
                return "events"
            if msg.op == "error":
                self.report("ERROR", str(msg.get("message", "")), str(msg.get("advice", "")), str(msg.get("code", "")))
            return "events"
        return self._job_event(job, msg)

    def _job_event(self, job: Job, msg: protocol.Message) -> str:
        op = msg.op
        if op == "progress":
            stage = str(msg.get("stage", ""))
            if job.state not in FINAL_STATES:
                job.state = "queued" if stage == "queued" else "running"
            job.stage, job.step, job.total = stage, int(msg.get("step") or 0), int(msg.get("total") or 0)
            job.eta_s = msg.get("eta_s")
            _redraw()
            return "events"
        if op == "preview":
            if job.state in FINAL_STATES:
                return "events"
            if job.state != "running":
                job.state = "running"
            try:
                result_handlers.show_preview(self, job, msg)
            except Exception as exc:
                # A preview is a nicety: never fail the job over it.
                print(f"Latentforge: preview of {job.label} skipped: {exc}")
            return "preview"
        if op == "result":
            index = int(msg.get("index") or 0)
            if index in job.results_seen:
                return "events"
            job.results_seen.add(index)
            job.expected = int(msg.get("count") or 1)
            try:
                result_handlers.add_result(self, job, msg)
            except Exception as exc:
                result_handlers.discard(self, job, remove_results=True)
                err = _error_dict(exc)
                self._job_ended(job, "failed", err)
                self.report("ERROR", f"{job.label}: {err['message']}", err.get("advice", ""), err.get("code", ""))
                return "result"
            if msg.get("final"):
                result_handlers.finish(self, job)
                self._job_ended(job, "finished")
            return "result"
        if op == "error":
            err = {k: msg.get(k) for k in ("code", "message", "advice", "details")}
            self._on_job_failed(job, err)
            return "events"
        if op == "cancelled":
            result_handlers.discard(self, job)
            self._job_ended(job, "cancelled")
            self.report("INFO", f"{job.label}: cancelled.")
            return "events"
        return "events"

    # ---- main-thread callbacks posted by the worker ------------------------------

    def _command_done(self) -> None:
        self._busy = max(0, self._busy - 1)

    def _poll_done(self) -> None:
        self._poll_in_flight = False

    def _set_state(self, state: str, problem: dict | None) -> None:
        self.state = state
        if problem is not None:
            self.problem = problem
        _redraw()

    def _on_python_detected(self, python: str) -> None:
        prefs = _preferences()
        if prefs is not None and not prefs.python_path:
            prefs.python_path = python
        self.report("INFO", f"Using the engine Python found at {python}.")

    def _on_worker_error(self, name: str, exc: BaseException, tb: str) -> None:
        err = _error_dict(exc)
        if not isinstance(exc, LatentforgeError):
            print(tb)
        if name in ("_w_start_local", "_w_connect"):
            code = err.get("code", "")
            if code == "protocol.version_mismatch":
                err["advice"] = ("Install the add-on and the engine from the same Latentforge release "
                                 f"(add-on {ADDON_VERSION}).")
            self._set_state("error", err)
        self.report("ERROR", err["message"], err.get("advice", ""), err.get("code", ""))

    def _on_connected(self, address: str, welcome: dict, models: dict, owned: bool) -> None:
        self.address = address
        self.owns_process = owned
        self.device = str(welcome.get("device") or models.get("device") or "")
        self.server = str(welcome.get("server") or "")
        self.models = list(models.get("models") or [])
        self.problem = None
        engine_version = self.server.rpartition(" ")[2]
        if engine_version and engine_version != ADDON_VERSION:
            self.problem = {"code": "version.differs", "message": f"Engine {engine_version}, add-on {ADDON_VERSION}.",
                            "advice": "Versions differ; install both from the same release if anything misbehaves."}
        self._set_state("connected", None)
        self.report("INFO", f"Connected to {self.server or 'the engine'} on {self.device or '?'} at {address}.")
        lost = [j.job_id for j in self.jobs.all() if j.state == "lost" and j.job_id]
        if lost:
            self._run_in_worker(self._w_resubscribe, lost)
        self.refresh_history()

    def _on_models(self, models: dict) -> None:
        self.models = list(models.get("models") or [])
        self.device = str(models.get("device") or self.device)
        _redraw()

    def _on_history(self, jobs: list[dict]) -> None:
        self.history = jobs
        _redraw()

    def _on_counts(self, counts: dict[str, int]) -> None:
        self.engine_counts = counts
        _redraw()

    def _on_accepted(self, key: str, job_id: str) -> None:
        job = self.jobs.get(key)
        if job is None:
            return
        self.jobs.bind(job, job_id)
        if job.state == "submitting":
            job.state = "queued"
        # Events that overtook this reply are older than anything queued for the job since.
        for msg in reversed(self._orphans.pop(job_id, [])):
            self._backlog.appendleft(("job_event", key, msg))
        if job.context.pop("cancel_requested", False):
            self.cancel(job)
        _redraw()

    def _on_subscribed(self, job_id: str, state: str) -> None:
        job = self.jobs.by_id(job_id)
        if job is not None and job.state == "lost" and state in ("queued", "running"):
            job.state = state

    def _on_submit_failed(self, key: str, err: dict) -> None:
        job = self.jobs.get(key)
        if job is None:
            return
        result_handlers.discard(self, job, remove_results=job.purpose == "reimport")
        self._job_ended(job, "failed", err)
        self.report("ERROR", f"{job.label}: {err.get('message', '')}", err.get("advice", ""), err.get("code", ""))

    def _on_job_error_dict(self, job_id: str, err: dict) -> None:
        job = self.jobs.by_id(job_id)
        if job is not None:
            self._on_job_failed(job, err)

    def _on_job_failed(self, job: Job, err: dict) -> None:
        result_handlers.discard(self, job)
        self._job_ended(job, "failed", err)
        self.report("ERROR", f"{job.label}: {err.get('message', '')}", str(err.get("advice") or ""),
                    str(err.get("code") or ""))

    def _on_reimport(self, key: str, messages: list) -> None:
        job = self.jobs.get(key)
        if job is None:
            return
        job.state = "running"
        for msg in messages:
            self._enqueue(("job_event", key, msg))

    def _on_connection(self, msg: protocol.Message) -> None:
        state = msg.get("state")
        err = msg.get("error")
        if self.state == "disconnected" and state in ("lost", "closed"):
            return  # the user stopped the engine or disconnected: not an error
        if state in ("connected", "reconnected"):
            self._set_state("connected", None)
            if state == "reconnected":
                self.refresh_models()
                lost = [j for j in self.jobs.all() if j.state == "lost"]
                for job in lost:
                    job.state = "queued"
            return
        if state == "closed" and (self._closing_client or err is None):
            return
        err = err or {"code": "connection.lost", "message": "The engine connection closed.", "advice": ""}
        if state == "failed":
            self._set_state("error", err)
        else:
            self._set_state("lost", err)
        n = self._mark_active_jobs_lost()
        advice = err.get("advice") or ""
        if self.owns_process:
            advice = ("Restart the engine in the add-on preferences (it restarts by itself when 'Restart "
                      "After Crash' is on); finished results can be re-imported from the job history.")
        more = f" while {n} job(s) ran" if n else ""
        self.report("ERROR", f"Lost the engine connection{more}: {err.get('message', '')}", advice,
                    str(err.get("code") or "connection.lost"))

    # ---- helpers -------------------------------------------------------------------

    def _mark_active_jobs_lost(self) -> int:
        """Running jobs lose their previews (nothing half-built stays); they may resume on reconnect."""
        n = 0
        for job in self.jobs.active():
            if job.state in ("queued", "running"):
                result_handlers.discard(self, job)
                job.state = "lost"
                n += 1
        return n

    def _job_ended(self, job: Job, state: str, err: dict | None = None) -> None:
        job.state = state
        job.finished = time.time()
        if err is not None:
            job.error = err
        if job.job_id:
            self._preview_counts.pop(job.job_id, None)
        _redraw()

    def _watch_process(self) -> None:
        """Notice an engine that exited by itself; restart it when the preferences say so."""
        if not self.owns_process:
            return
        state = self.process.poll()
        if state != "crashed" or self.state in ("starting",):
            return
        code = self.process.exit_code
        tail = " | ".join(self.process.tail(3))
        err = {"code": "engine.crashed", "message": f"The engine exited unexpectedly (code {code}).",
               "advice": f"See the engine log ({self.process.log_path}). {tail}".strip()}
        self.owns_process = False
        self._set_state("error", err)
        self._mark_active_jobs_lost()
        now = time.monotonic()
        recent = [t for t in self._restarts if now - t < 60.0]
        if self.settings.auto_restart and len(recent) < MAX_RESTARTS_PER_MINUTE:
            self._restarts.append(now)
            self.report("ERROR", err["message"] + " Restarting it.", err["advice"], err["code"])
            self.start_local(self.settings)
        else:
            self.report("ERROR", err["message"], err["advice"], err["code"])

    def status_line(self) -> tuple[str, str]:
        """(icon, text) for the panel's status line."""
        if self.state == "connected":
            active = self.jobs.active()
            q = self.engine_counts.get("queued", 0)
            r = self.engine_counts.get("running", 0)
            queue_text = f"{r} running, {q} queued" if (q or r) else (f"{len(active)} active" if active else "idle")
            if self.problem and self.problem.get("code") == "version.differs":
                return "ERROR", f"Connected · {self.device} · {queue_text} · {self.problem['message']}"
            return "CHECKMARK", f"Connected · {self.device} · {queue_text}"
        if self.state == "starting":
            return "SORTTIME", "Starting the engine…"
        if self.state == "connecting":
            return "SORTTIME", "Connecting…"
        if self.state == "lost":
            return "ERROR", "Engine connection lost — reconnecting…"
        if self.state == "error" and self.problem:
            return "ERROR", str(self.problem.get("message", "Engine error"))
        return "UNLINKED", "Not connected — start or connect the engine in Preferences"

    def shutdown(self) -> None:
        """Add-on disabled / Blender quits: close the client and stop the engine we started."""
        client, self.client = self.client, None
        if client is not None:
            self._closing_client = True
            client.close()
        if self.owns_process or self.process.running:
            self.process.stop(timeout=5.0)
        self._commands.put(None)


def _error_dict(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, LatentforgeError):
        return exc.to_dict()
    return {"code": "addon.internal", "message": f"{type(exc).__name__}: {exc}",
            "advice": "See the system console for details."}


def _spec_label(spec: dict) -> str:
    params = spec.get("params") or {}
    what = params.get("prompt") or params.get("category") or spec.get("task", "job")
    return f"{spec.get('model', '?')}: {what}"


def _preferences():
    addon = bpy.context.preferences.addons.get(__package__)
    return addon.preferences if addon is not None else None


def _redraw() -> None:
    wm = bpy.context.window_manager
    if wm is None:
        return
    for window in wm.windows:
        screen = window.screen
        if screen is None:
            continue
        for area in screen.areas:
            if area.type in {"VIEW_3D", "PREFERENCES"}:
                area.tag_redraw()


def _popup(message: str, advice: str) -> None:
    if bpy.app.background:
        return
    wm = bpy.context.window_manager

    def draw(menu, _context):
        menu.layout.label(text=message)
        if advice:
            menu.layout.label(text=advice)

    try:
        wm.popup_menu(draw, title="Latentforge", icon="ERROR")
    except (RuntimeError, AttributeError):
        pass


BRIDGE = Bridge()


def tick() -> float:
    """The ``bpy.app.timers`` function (module level so it can be registered and found)."""
    return BRIDGE.tick()


def run_until(until: Callable[[], bool], timeout: float,
              every: Callable[[], None] | None = None) -> bool:
    """Drive the bridge's timer by hand until ``until()`` is true; False after ``timeout`` s.

    Blender run headless (``blender -b``, bpy as a module) has no event loop, so timers
    never fire: scripts and tests that use the add-on there call this instead. ``every``
    runs after each tick (e.g. to sample the scene).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        delay = tick()
        if every is not None:
            every()
        if until():
            return True
        time.sleep(min(delay, 0.02))
    return False


def _at_exit() -> None:
    # Blender does not unregister add-ons when it quits; the engine runs in its own session
    # (so a Ctrl+C in Blender's terminal does not kill it mid-write) and must be stopped here.
    BRIDGE.shutdown()


def register() -> None:
    if not bpy.app.timers.is_registered(tick):
        bpy.app.timers.register(tick, first_interval=0.1, persistent=True)
    atexit.register(_at_exit)


def unregister() -> None:
    atexit.unregister(_at_exit)
    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)
    BRIDGE.shutdown()
