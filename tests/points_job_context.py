"""A job context for pipeline tests: records progress and previews, cancels on request."""

from __future__ import annotations

import numpy as np

from engine.errors import JobCancelled


class RecordingContext:
    """What the engine hands a pipeline, recording what the pipeline reports."""

    device = "cpu"

    def __init__(self, cancel_at: int | None = None, preview_every: int = 2) -> None:
        self.steps, self.previews, self.cancel_at, self.preview_every = [], [], cancel_at, preview_every

    def progress(self, stage, step, total):
        self.steps.append((stage, step, total))

    def wants_preview(self, step):
        return step % self.preview_every == 0

    def preview(self, kind, arrays, meta=None):
        self.previews.append((kind, {k: np.asarray(v) for k, v in arrays.items()}, dict(meta or {})))

    def check_cancelled(self):
        if self.cancel_at is not None and len(self.steps) >= self.cancel_at:
            raise JobCancelled("cancelled")
