"""Which models the engine knows, whether each is usable, and one cached pipeline per model.

Known models: ``procedural`` (always available), ``points`` (imported lazily from
``engine.pipelines.points``; its own ``status()`` says whether a checkpoint is
installed), ``mesh`` and ``views`` (not trained yet: reported unavailable with the reason).

Development and tests may add pipelines with ``LATENTFORGE_EXTRA_PIPELINES``, a comma
separated list of ``module:Class`` (the class is instantiated without arguments and
served under its ``name``). Only whoever starts the engine sets its environment, so this
opens nothing to clients.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from typing import Any

from engine.errors import ModelUnavailable
from engine.pipelines.base import TASKS, Pipeline

log = logging.getLogger(__name__)

EXTRA_ENV = "LATENTFORGE_EXTRA_PIPELINES"

# name -> (import path "module:Class", kinds, reason when not importable / not built yet)
_KNOWN: dict[str, tuple[str | None, tuple[str, ...], str]] = {
    "procedural": ("engine.pipelines.procedural:ProceduralPipeline", ("mesh",), ""),
    "points": ("engine.pipelines.points:PointsPipeline", ("points",), ""),
    "mesh": (None, ("mesh",),
             "The MeshDiffusion-style mesh model is not trained yet; use `procedural` for meshes "
             "or `points` for point clouds."),
    "views": (None, ("images",),
              "The Zero-1-to-3-style novel-view model is not trained yet."),
}

_lock = threading.Lock()
_cache: dict[str, Pipeline] = {}


class UnavailablePipeline:
    """Stands in for a model that cannot be used; every submit gets ``model.unavailable``."""

    tasks: tuple[str, ...] = ()

    def __init__(self, name: str, kinds: tuple[str, ...], reason: str) -> None:
        self.name = name
        self.kinds = kinds
        self.reason = reason

    def status(self) -> dict[str, Any]:
        """Unavailable, for every task, with the reason."""
        return {"available": False, "reason": self.reason,
                "tasks": {t: {"available": False, "reason": self.reason} for t in TASKS}}

    def validate(self, task: str, params: dict[str, Any]) -> dict[str, Any]:
        """Always refuses."""
        raise ModelUnavailable(f"Model {self.name!r} is not available: {self.reason}")

    def run(self, task: str, params: dict[str, Any], ctx: Any) -> list:
        """Always refuses."""
        raise ModelUnavailable(f"Model {self.name!r} is not available: {self.reason}")


def _extra_specs() -> list[str]:
    """The ``module:Class`` targets in ``LATENTFORGE_EXTRA_PIPELINES``, without repeats."""
    return list(dict.fromkeys(filter(None, (s.strip() for s in os.environ.get(EXTRA_ENV, "").split(",")))))


def _load(target: str) -> Pipeline:
    module_name, _, cls_name = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, cls_name)()


def _build(name: str) -> Pipeline:
    target, kinds, reason = _KNOWN[name]
    if target is None:
        return UnavailablePipeline(name, kinds, reason)
    try:
        return _load(target)
    except ModuleNotFoundError as exc:
        why = f"its code is not installed ({exc})"
    except Exception as exc:  # a broken model must not take the engine down
        log.exception("loading pipeline %s failed", name)
        why = f"its code failed to load ({type(exc).__name__}: {exc})"
    return UnavailablePipeline(name, kinds, f"The {name} pipeline cannot be used: {why}.")


def _extras() -> dict[str, Pipeline]:
    found = {}
    for target in _extra_specs():
        key = f"extra:{target}"
        if key not in _cache:
            _cache[key] = _load(target)
        found[_cache[key].name] = _cache[key]
    return found


def model_names() -> list[str]:
    """Every model name the engine knows, built-ins first."""
    with _lock:
        return list(_KNOWN) + [n for n in _extras() if n not in _KNOWN]


def get_pipeline(name: str) -> Pipeline:
    """The (cached) pipeline serving model ``name``; raises ``ModelUnavailable`` for unknown names."""
    with _lock:
        extras = _extras()
        if name in extras:
            return extras[name]
        if name not in _KNOWN:
            known = ", ".join(list(_KNOWN) + list(extras))
            raise ModelUnavailable(f"There is no model called {name!r}; known models: {known}.",
                                   details={"model": name})
        if name not in _cache:
            _cache[name] = _build(name)
        return _cache[name]


def task_status(pipeline: Pipeline, task: str) -> tuple[bool, str]:
    """Whether ``pipeline`` can run ``task`` now, and why not."""
    status = pipeline.status()
    if not status.get("available", False):
        return False, str(status.get("reason") or "the model is not available")
    info = (status.get("tasks") or {}).get(task)
    if task not in pipeline.tasks:
        reason = (info or {}).get("reason") or f"it supports {', '.join(pipeline.tasks) or 'no task'}"
        return False, str(reason)
    if info is not None and not info.get("available", True):
        return False, str(info.get("reason") or "the task is not available")
    return True, ""


def check_task(pipeline: Pipeline, task: str) -> None:
    """Raise ``ModelUnavailable`` with the reason when ``pipeline`` cannot run ``task``."""
    ok, reason = task_status(pipeline, task)
    if not ok:
        raise ModelUnavailable(f"Model {pipeline.name!r} cannot {task}: {reason}",
                               details={"model": pipeline.name, "task": task})


def list_models() -> list[dict[str, Any]]:
    """``[{name, available, reason, kinds, tasks, ...}]`` for every known model (cheap: no weights loaded).

    Extra JSON-safe fields a pipeline's ``status()`` reports (e.g. ``categories`` it can be
    conditioned on) are passed through so clients can offer them.
    """
    out = []
    for name in model_names():
        pipeline = get_pipeline(name)
        try:
            status = pipeline.status()
        except Exception as exc:
            log.exception("status of pipeline %s failed", name)
            status = {"available": False, "reason": f"its status check failed ({type(exc).__name__}: {exc})"}
        tasks = dict(status.get("tasks") or {})
        for task in TASKS:
            if task not in tasks:
                supported = task in getattr(pipeline, "tasks", ())
                tasks[task] = {"available": supported and bool(status.get("available")),
                               "reason": "" if supported else f"{name} does not support {task}"}
        entry = {k: v for k, v in status.items() if k not in ("available", "reason", "tasks")}
        entry.update({"name": name, "available": bool(status.get("available")),
                      "reason": str(status.get("reason") or ""), "kinds": list(getattr(pipeline, "kinds", ())),
                      "tasks": tasks})
        out.append(entry)
    return out
