"""The add-on's record of each job it submitted or re-imported (plain Python, main thread).

A ``Job`` exists from the moment an operator asks for it (before the engine has given
it an id) until the user clears it. It holds what the UI shows (state, stage, progress,
ETA, error) and what the scene side needs to place the results (``context``: cursor,
spacing, objects to refine, populate plan...). Blender objects are referred to by name,
never held: undo and file loads invalidate Python references to datablocks.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

FINAL_STATES = ("finished", "failed", "cancelled")
ACTIVE_STATES = ("submitting", "queued", "running", "lost")

_keys = itertools.count(1)


@dataclass
class Job:
    """One job as the add-on sees it."""

    purpose: str                       # generate | refine | views | populate | reimport
    spec: dict[str, Any]               # what was (or will be) submitted: task, model, params, priority
    label: str                         # short text for the jobs list
    context: dict[str, Any] = field(default_factory=dict)
    key: str = field(default_factory=lambda: f"local-{next(_keys)}")
    job_id: str | None = None
    state: str = "submitting"
    stage: str = ""
    step: int = 0
    total: int = 0
    eta_s: float | None = None
    position: int | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None
    error: dict[str, Any] | None = None
    results_seen: set[int] = field(default_factory=set)
    expected: int | None = None
    objects: list[str] = field(default_factory=list)     # names of objects this job created
    preview: str | None = None                            # name of the live preview object
    collection: str | None = None                         # name of the job's collection

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def progress(self) -> float:
        """0..1 for the progress bar."""
        if self.state == "finished":
            return 1.0
        return min(1.0, self.step / self.total) if self.total else 0.0

    @property
    def model(self) -> str:
        return str(self.spec.get("model", ""))

    @property
    def task(self) -> str:
        return str(self.spec.get("task", ""))

    def status_text(self) -> str:
        """One line for the jobs list: state, stage, ETA."""
        if self.state == "running":
            eta = f", {self.eta_s:.0f} s left" if self.eta_s is not None else ""
            stage = self.stage or "running"
            return f"{stage} {self.step}/{self.total}{eta}" if self.total else stage
        if self.state == "queued" and self.position:
            return f"queued ({self.position} ahead)"
        if self.state == "failed" and self.error:
            return f"failed: {self.error.get('message', '')}"
        if self.state == "lost":
            return "engine connection lost"
        return self.state


class JobList:
    """Jobs by local key, with lookup by engine job id."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._by_id: dict[str, str] = {}

    def add(self, job: Job) -> Job:
        self._jobs[job.key] = job
        if job.job_id:
            self._by_id[job.job_id] = job.key
        return job

    def bind(self, job: Job, job_id: str) -> None:
        """Record the id the engine gave a job."""
        job.job_id = job_id
        self._by_id[job_id] = job.key

    def get(self, key: str) -> Job | None:
        return self._jobs.get(key)

    def by_id(self, job_id: str | None) -> Job | None:
        key = self._by_id.get(job_id) if job_id else None
        return self._jobs.get(key) if key else None

    def all(self) -> list[Job]:
        """Newest first."""
        return sorted(self._jobs.values(), key=lambda j: j.created, reverse=True)

    def active(self) -> list[Job]:
        return [j for j in self.all() if j.active]

    def remove(self, job: Job) -> None:
        self._jobs.pop(job.key, None)
        if job.job_id:
            self._by_id.pop(job.job_id, None)

    def clear_finished(self) -> None:
        for job in [j for j in self._jobs.values() if j.state in FINAL_STATES]:
            self.remove(job)

    def __len__(self) -> int:
        return len(self._jobs)
