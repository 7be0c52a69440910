"""The one small interface every pipeline implements: spec in, events out, arrays back.

A pipeline serves one model (``name``) for one or more tasks (``generate``, ``refine``,
``views``, ``populate``). The job worker calls, in order:

1. ``validate(task, params)`` before the job is accepted: returns normalized params or
   raises ``InvalidRequest`` / ``ModelUnavailable`` (the client gets the error at once);
2. ``run(task, params, ctx)`` on the worker thread that owns the device. The pipeline
   reports through ``ctx`` (progress, previews) and calls ``ctx.check_cancelled()`` at
   every denoising step; it returns a list of ``Result``.

Nothing here knows about sockets or Blender.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

import numpy as np

TASKS = ("generate", "refine", "views", "populate", "interpolate")
RESULT_KINDS = ("mesh", "points", "images")


@dataclass
class Result:
    """One generated object.

    ``kind`` is ``mesh`` (arrays ``vertices`` f32 N×3, ``faces`` i32 M×3, optional
    ``normals`` f32 N×3, ``colors`` u8 N×4), ``points`` (``points`` f32 N×3, optional
    ``normals``/``colors``) or ``images`` (``images`` u8 K×H×W×4, ``poses`` f32 K×4×4
    camera-to-world in Blender's convention). ``meta`` is JSON-safe (category, prompt,
    seed, transform, ...).
    """

    kind: str
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)


class JobContext(Protocol):
    """What a running pipeline may tell its job. Implemented by the job worker."""

    device: str

    def progress(self, stage: str, step: int, total: int) -> None:
        """Report ``step`` of ``total`` in ``stage`` (e.g. "denoise"); ETA is derived."""

    def wants_preview(self, step: int) -> bool:
        """True when a preview at this step would be sent (rate-limited by the engine)."""

    def preview(self, kind: str, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any] | None = None) -> None:
        """Send the current estimate (e.g. x0 as ``points``) to subscribers."""

    def check_cancelled(self) -> None:
        """Raise ``JobCancelled`` if the job was cancelled."""


class Pipeline(Protocol):
    """A model's pipelines. ``name`` is the model name clients ask for."""

    name: str
    tasks: tuple[str, ...]
    kinds: tuple[str, ...]

    def status(self) -> dict[str, Any]:
        """``{"available": bool, "reason": str, "tasks": {task: {"available": bool, "reason": str}}}``.

        Must be cheap (no weights loaded): the ``models`` request calls it.
        """

    def validate(self, task: str, params: dict[str, Any]) -> dict[str, Any]:
        """Return normalized params or raise a ``LatentforgeError`` subclass."""

    def run(self, task: str, params: dict[str, Any], ctx: JobContext) -> list[Result]:
        """Do the work; load weights lazily on first call and keep them cached."""
