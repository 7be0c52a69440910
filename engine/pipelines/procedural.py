"""The ``procedural`` model: parametric shapes from ``engine.data.procedural`` served as a pipeline.

It needs no weights and runs anywhere, so the whole path (submit, progress, previews,
results, persistence) works before any learned model is installed.

Tasks:

- ``generate``: ``category`` (or ``prompt``: the category named in the text), ``count``
  (1-64), ``seed`` (shape ``i`` uses ``seed + i``; drawn at random and recorded when
  absent), ``overrides`` (shape parameters to pin, see ``engine.data.procedural``).
- ``populate``: ``items`` = ``[{"category": str, "count": int, "overrides": {...}}, ...]``
  (at most 256 objects), ``seed``, ``spacing`` (grid pitch in Blender units, default 2.5):
  the objects are laid out on a grid on the XY plane through each result's ``transform``.

Every result is a ``mesh`` (``vertices`` f32, ``faces`` i32, ``normals`` f32) whose
``meta`` holds category, seed, shape parameters and captions. Before each result a preview
of its surface points (``points`` kind) is offered, so clients exercise the preview path.
"""

from __future__ import annotations

import math
import re
import secrets
from typing import Any

import numpy as np

from engine.errors import InvalidRequest, ModelUnavailable
from engine.pipelines.base import TASKS, JobContext, Result

MAX_COUNT = 64
MAX_POPULATE = 256
PREVIEW_POINTS = 2048
MAX_SEED = 2**31 - 1
_REFINE_REASON = ("procedural shapes are built from parameters and cannot start from an existing "
                  "object; use the `points` model to refine a selection")
_INTERPOLATE_REASON = ("procedural shapes have no latent space to interpolate in; use the `points` model")
_VIEWS_REASON = "procedural shapes have no image model; novel views need the `views` model"


class PromptWithoutCategory(InvalidRequest):
    """A prompt given to the procedural model names none of its categories."""

    code = "procedural.no_category"
    advice = "Name one category in the prompt (e.g. 'a tall chair') or pass category explicitly."


class AmbiguousPrompt(InvalidRequest):
    """A prompt given to the procedural ``generate`` task names several categories."""

    code = "procedural.ambiguous_prompt"
    advice = "Name one category per generate job, or use the populate task for several."


def _categories() -> tuple[str, ...]:
    from engine.data.procedural import CATEGORIES
    return CATEGORIES


def category_from_prompt(prompt: str) -> list[str]:
    """Categories named in ``prompt`` (whole words, singular or simple plural), in text order."""
    found = []
    text = prompt.lower()
    for cat in _categories():
        m = re.search(rf"\b{re.escape(cat)}(s|es)?\b", text)
        if m:
            found.append((m.start(), cat))
    return [cat for _, cat in sorted(found)]


def _int(params: dict[str, Any], key: str, default: int | None, lo: int, hi: int) -> int | None:
    value = params.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise InvalidRequest(f"{key!r} must be a whole number, got {value!r}.")
    value = int(value)
    if not lo <= value <= hi:
        raise InvalidRequest(f"{key!r} must be between {lo} and {hi}, got {value}.")
    return value


def _check_shape(category: str, seed: int, overrides: Any) -> None:
    """Let the data layer check the category and overrides (cheap: no geometry is built)."""
    from engine.data.procedural import sample_params
    if overrides is not None and not isinstance(overrides, dict):
        raise InvalidRequest(f"'overrides' must be an object of shape parameters, got {type(overrides).__name__}.")
    sample_params(category, seed, overrides)


class ProceduralPipeline:
    """Parametric shapes by category, seed and parameter overrides."""

    name = "procedural"
    tasks = ("generate", "populate")
    kinds = ("mesh",)

    def status(self) -> dict[str, Any]:
        """Always available; refine and views are not supported (with the reason)."""
        tasks = {t: {"available": True, "reason": ""} for t in self.tasks}
        tasks["refine"] = {"available": False, "reason": _REFINE_REASON}
        tasks["views"] = {"available": False, "reason": _VIEWS_REASON}
        tasks["interpolate"] = {"available": False, "reason": _INTERPOLATE_REASON}
        return {"available": True, "reason": "", "tasks": {t: tasks[t] for t in TASKS},
                "categories": list(_categories())}

    # ---- validation ---------------------------------------------------------------

    def validate(self, task: str, params: dict[str, Any]) -> dict[str, Any]:
        """Normalize params: resolve the category, fix the seed, check counts and overrides."""
        if task not in self.tasks:
            reason = {"refine": _REFINE_REASON, "views": _VIEWS_REASON}.get(task, "unknown task")
            raise ModelUnavailable(f"The procedural model cannot {task}: {reason}.")
        if not isinstance(params, dict):
            raise InvalidRequest("'params' must be an object.")
        params = {k: v for k, v in params.items() if v is not None}
        if params.get("image") is not None or params.get("arrays"):
            raise ModelUnavailable("The procedural model takes no image or array input.",
                                   "Give a category or a prompt naming one, or use a learned model.")
        seed = _int(params, "seed", None, 0, MAX_SEED)
        if seed is None:
            seed = secrets.randbelow(MAX_SEED - MAX_COUNT * MAX_POPULATE)
        if task == "generate":
            return self._validate_generate(params, seed)
        return self._validate_populate(params, seed)

    def _validate_generate(self, params: dict[str, Any], seed: int) -> dict[str, Any]:
        allowed = {"category", "prompt", "count", "seed", "overrides", "steps", "guidance"}
        _refuse_unknown(params, allowed)
        category, prompt = params.get("category"), params.get("prompt")
        if category is None and prompt is None:
            raise InvalidRequest("Give a 'category' or a 'prompt' naming one.",
                                 f"Categories: {', '.join(_categories())}.")
        if category is not None and not isinstance(category, str):
            raise InvalidRequest(f"'category' must be a string, got {category!r}.")
        if prompt is not None and not isinstance(prompt, str):
            raise InvalidRequest(f"'prompt' must be a string, got {prompt!r}.")
        if category is None:
            named = category_from_prompt(prompt)
            if not named:
                raise PromptWithoutCategory(f"The prompt {prompt!r} names no procedural category "
                                            f"({', '.join(_categories())}).")
            if len(set(named)) > 1:
                raise AmbiguousPrompt(f"The prompt {prompt!r} names several categories: {', '.join(named)}.")
            category = named[0]
        count = _int(params, "count", 1, 1, MAX_COUNT)
        overrides = params.get("overrides")
        _check_shape(category, seed, overrides)
        return {"category": category, "prompt": prompt, "count": count, "seed": seed,
                "overrides": overrides or {}}

    def _validate_populate(self, params: dict[str, Any], seed: int) -> dict[str, Any]:
        _refuse_unknown(params, {"items", "seed", "spacing", "prompt"})
        items = params.get("items")
        if not isinstance(items, list) or not items:
            raise InvalidRequest("'items' must be a non-empty list of {\"category\": ..., \"count\": ...}.")
        out, total = [], 0
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("category"), str):
                raise InvalidRequest(f"items[{i}] must be an object with a 'category' string.")
            _refuse_unknown(item, {"category", "count", "overrides"}, where=f"items[{i}]")
            count = _int(item, "count", 1, 1, MAX_POPULATE)
            _check_shape(item["category"], seed, item.get("overrides"))
            out.append({"category": item["category"], "count": count, "overrides": item.get("overrides") or {}})
            total += count
        if total > MAX_POPULATE:
            raise InvalidRequest(f"populate makes at most {MAX_POPULATE} objects per job, asked for {total}.")
        spacing = params.get("spacing", 2.5)
        if isinstance(spacing, bool) or not isinstance(spacing, (int, float)) or not 0 < spacing < 1e4:
            raise InvalidRequest(f"'spacing' must be a positive number, got {spacing!r}.")
        return {"items": out, "seed": seed, "spacing": float(spacing), "prompt": params.get("prompt")}

    # ---- running ------------------------------------------------------------------

    def _plan(self, task: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        if task == "generate":
            return [{"category": params["category"], "seed": params["seed"] + i,
                     "overrides": params["overrides"], "transform": None} for i in range(params["count"])]
        plan = []
        for item in params["items"]:
            for _ in range(item["count"]):
                plan.append({"category": item["category"], "seed": params["seed"] + len(plan),
                             "overrides": item["overrides"]})
        cols = max(1, math.ceil(math.sqrt(len(plan))))
        for i, entry in enumerate(plan):
            row, col = divmod(i, cols)
            m = np.eye(4)
            m[0, 3] = (col - (cols - 1) / 2) * params["spacing"]
            m[1, 3] = row * params["spacing"]
            entry["transform"] = m.tolist()
        return plan

    def run(self, task: str, params: dict[str, Any], ctx: JobContext) -> list[Result]:
        """Build each shape; offer its surface points as a preview; return meshes."""
        from engine.data.procedural import generate_shape

        plan = self._plan(task, params)
        ctx.progress("generate", 0, len(plan))
        results = []
        for i, entry in enumerate(plan):
            ctx.check_cancelled()
            shape = generate_shape(entry["category"], entry["seed"], entry["overrides"] or None)
            mesh = shape.mesh
            if ctx.wants_preview(i + 1):
                points = np.asarray(mesh.sample(PREVIEW_POINTS, seed=entry["seed"]), dtype=np.float32)
                ctx.preview("points", {"points": points},
                            {"index": i, "category": shape.category, "seed": shape.seed})
            meta = {"category": shape.category, "seed": shape.seed, "shape_id": shape.shape_id,
                    "params": shape.params, "captions": shape.captions, "prompt": params.get("prompt"),
                    "transform": entry["transform"]}
            results.append(Result("mesh", {
                "vertices": np.asarray(mesh.vertices, dtype=np.float32),
                "faces": np.asarray(mesh.faces, dtype=np.int32),
                "normals": np.asarray(mesh.vertex_normals, dtype=np.float32),
            }, meta))
            ctx.progress("generate", i + 1, len(plan))
        return results


def _refuse_unknown(params: dict[str, Any], allowed: set[str], where: str = "params") -> None:
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise InvalidRequest(f"Unknown field(s) in {where}: {', '.join(unknown)}.",
                             f"Allowed: {', '.join(sorted(allowed))}.")
