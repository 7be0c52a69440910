"""The ``points`` model: LION-style latent point diffusion served as a pipeline.

Tasks:

- ``generate``: ``category`` (or ``prompt`` naming one; absent: unconditional), ``count``
  (1-64), ``seed`` (shape ``i`` starts from the noise of ``seed + i``; drawn and recorded
  when absent), ``steps`` (per prior, 1-1000, default 25), ``guidance`` (classifier-free
  guidance scale, 0-20, default 1.5; 1 = none), ``n_points`` (16-200000, default 2048),
  ``sampler`` (``dpmsolver++`` default, or ``ddim``).
- ``refine`` (SDEdit): the object travels as arrays ``vertices`` (f32 N×3) + ``faces``
  (i32 M×3), or ``points`` (f32 N×3). It is sampled (2048 points), fitted to the training
  frame, encoded, its latents noised to ``strength`` in [0, 1] (0 = its reconstruction,
  1 = a fresh sample) and denoised with the optional ``category``/``prompt``; the result is
  mapped back to the object's own frame (centre and scale restored, recorded in ``meta``).

Results are ``points`` (f32 N×3). Previews: the decoded x0 estimate (512 points, first
shape of the batch) while the point prior denoises. Weights load on first use and stay
cached per device; ``status()`` reads no weights.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import InvalidRequest, ModelUnavailable
from engine.pipelines.base import TASKS, JobContext, Result

DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "points"
CHECKPOINT_ENV = "LATENTFORGE_POINTS_CHECKPOINT"
MAX_COUNT = 64
MAX_SEED = 2**31 - 1
BATCH = 16
REFINE_POINTS = 2048
_VIEWS = "the points model makes point clouds; novel views need the `views` model"
_POPULATE = "populate lays out procedural meshes; use the `procedural` model"


def checkpoint_dir() -> Path:
    return Path(os.environ.get(CHECKPOINT_ENV) or DEFAULT_CHECKPOINT)


def _int(params: dict[str, Any], key: str, default: int | None, lo: int, hi: int) -> int | None:
    v = params.get(key, default)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v:
        raise InvalidRequest(f"{key!r} must be a whole number, got {v!r}.")
    if not lo <= int(v) <= hi:
        raise InvalidRequest(f"{key!r} must be between {lo} and {hi}, got {int(v)}.")
    return int(v)


def _float(params: dict[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    v = params.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
        raise InvalidRequest(f"{key!r} must be a number, got {v!r}.")
    if not lo <= float(v) <= hi:
        raise InvalidRequest(f"{key!r} must be between {lo} and {hi}, got {v}.")
    return float(v)


class PointsPipeline:
    """Generate and refine point clouds with the trained point model."""

    name = "points"
    tasks = ("generate", "refine")
    kinds = ("points",)

    def __init__(self, checkpoint: str | Path | None = None) -> None:
        self._ckpt = Path(checkpoint) if checkpoint else None
        self._models: dict[str, Any] = {}
        self._lock = threading.Lock()

    @property
    def checkpoint(self) -> Path:
        return self._ckpt or checkpoint_dir()

    # ---- status --------------------------------------------------------------------

    def _config(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.checkpoint / "config.json").read_text())
        except (OSError, ValueError):
            return None

    def categories(self) -> list[str]:
        cfg = self._config() or {}
        return list((cfg.get("cond") or {}).get("categories") or [])

    def status(self) -> dict[str, Any]:
        """Available when the checkpoint folder is complete (only its small config is read)."""
        from engine.models.points.model import checkpoint_complete
        ok, reason = checkpoint_complete(self.checkpoint)
        if ok and self._config() is None:
            ok, reason = False, f"config.json in {self.checkpoint} is not valid JSON"
        tasks = {t: {"available": ok and t in self.tasks, "reason": reason} for t in TASKS}
        tasks["views"]["reason"] = _VIEWS
        tasks["populate"]["reason"] = _POPULATE
        return {"available": ok, "reason": reason, "tasks": tasks,
                "categories": self.categories() if ok else [], "checkpoint": str(self.checkpoint)}

    # ---- validation ----------------------------------------------------------------

    def _require(self) -> None:
        from engine.models.points.errors import PointsCheckpointMissing
        from engine.models.points.model import checkpoint_complete
        ok, reason = checkpoint_complete(self.checkpoint)
        if not ok:
            raise PointsCheckpointMissing(f"The points model is not installed: {reason}.")

    def _category(self, params: dict[str, Any]) -> str | None:
        from engine.models.points.errors import UnknownCondition
        cats = self.categories()
        category, prompt = params.get("category"), params.get("prompt")
        if category is not None:
            if not isinstance(category, str) or category not in cats:
                raise UnknownCondition(f"The points model knows no category {category!r}; it knows "
                                       f"{', '.join(cats)}.", details={"category": category})
            return category
        if prompt is not None:
            if not isinstance(prompt, str):
                raise InvalidRequest(f"'prompt' must be a string, got {prompt!r}.")
            named = [c for c in cats if re.search(rf"\b{re.escape(c)}(s|es)?\b", prompt.lower())]
            if len(named) != 1:
                raise UnknownCondition(f"The prompt {prompt!r} must name exactly one of the categories "
                                       f"{', '.join(cats)} (this checkpoint has no text encoder).")
            return named[0]
        return None

    def validate(self, task: str, params: dict[str, Any]) -> dict[str, Any]:
        """Normalized params; raises ``InvalidRequest``/``ModelUnavailable`` subclasses."""
        if task not in self.tasks:
            reason = {"views": _VIEWS, "populate": _POPULATE}.get(task, "unknown task")
            raise ModelUnavailable(f"The points model cannot {task}: {reason}.")
        if not isinstance(params, dict):
            raise InvalidRequest("'params' must be an object.")
        self._require()
        params = {k: v for k, v in params.items() if v is not None}
        arrays = params.pop("arrays", None) or {}
        allowed = {"category", "prompt", "count", "seed", "steps", "guidance", "n_points", "sampler"}
        if task == "refine":
            allowed |= {"strength", "input"}
        if params.get("image") is not None:
            from engine.models.points.errors import ImageConditionUnsupported
            raise ImageConditionUnsupported("The points checkpoint is conditioned on categories, not images.")
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise InvalidRequest(f"Unknown parameter(s) for points {task}: {', '.join(unknown)}.",
                                 f"Known: {', '.join(sorted(allowed))}.")
        seed = _int(params, "seed", None, 0, MAX_SEED - MAX_COUNT)
        out = {
            "category": self._category(params),
            "prompt": params.get("prompt"),
            "count": _int(params, "count", 1, 1, MAX_COUNT),
            "seed": secrets.randbelow(MAX_SEED - MAX_COUNT) if seed is None else seed,
            "steps": _int(params, "steps", 25, 1, 1000),
            "guidance": _float(params, "guidance", 1.5, 0.0, 20.0),
            "n_points": _int(params, "n_points", 2048, 16, 200_000),
            "sampler": params.get("sampler", "dpmsolver++"),
        }
        if out["sampler"] not in ("dpmsolver++", "ddim"):
            raise InvalidRequest(f"'sampler' must be 'dpmsolver++' or 'ddim', got {out['sampler']!r}.")
        if task == "refine":
            from engine.models.points.inputs import check_sizes
            out["strength"] = _float(params, "strength", 0.5, 0.0, 1.0)
            clean = {k: np.asarray(v) for k, v in arrays.items() if k in ("vertices", "faces", "points")}
            out["input"] = check_sizes(clean)
            out["arrays"] = clean
        return out

    # ---- running -------------------------------------------------------------------

    def model(self, device: str = "cpu"):
        """The loaded model for ``device`` (loaded once, then cached)."""
        with self._lock:
            if device not in self._models:
                self._require()
                from engine.models.points.model import PointsModel
                self._models[device] = PointsModel.load(self.checkpoint, device)
            return self._models[device]

    def run(self, task: str, params: dict[str, Any], ctx: JobContext) -> list[Result]:
        import torch

        from engine.models.points.sampler import Hooks, LatentSampler

        device = getattr(ctx, "device", "cpu") or "cpu"
        model = self.model(device)
        sampler = LatentSampler(model)
        count, seed = params["count"], params["seed"]
        cats = model.cfg.cond.categories
        cid = cats.index(params["category"]) if params.get("category") else -1
        ctx.progress("load", 1, 1)

        centre, scale, z_in, h_in = np.zeros(3), 1.0, None, None
        if task == "refine":
            from engine.models.points.inputs import normalize, sample_input
            pts = sample_input(params["arrays"], REFINE_POINTS, seed)
            pts, centre, scale = normalize(pts)
            g = torch.Generator(device=device).manual_seed(seed)
            z_in, h_in = sampler.encode(torch.from_numpy(pts)[None].to(device), g)

        results: list[Result] = []
        done_steps = [0]
        n_batches = (count + BATCH - 1) // BATCH
        for b0 in range(0, count, BATCH):
            b = min(BATCH, count - b0)
            seeds = [seed + b0 + i for i in range(b)]
            D, M = model.cfg.vae.global_dim, model.cfg.vae.n_latent_points
            P = 3 + model.cfg.vae.point_feat_dim
            zs, hs = [], []
            for s in seeds:   # per-shape noise: shape i is the same whatever the batch
                gs = torch.Generator(device="cpu").manual_seed(s)
                zs.append(torch.randn(D, generator=gs))
                hs.append(torch.randn(M, P, generator=gs))
            z_noise, h_noise = torch.stack(zs).to(device), torch.stack(hs).to(device)
            cond = sampler.condition(torch.full((b,), cid, dtype=torch.long))
            total = 2 * params["steps"] * n_batches

            def on_step(stage: str, k: int, _tot: int, _b0=b0) -> None:
                ctx.check_cancelled()
                ctx.progress("denoise", done_steps[0] + k, total)

            def on_preview(points: torch.Tensor, stage: str) -> None:
                p = points[0].float().cpu().numpy() * scale + centre
                ctx.preview("points", {"points": p.astype(np.float32)},
                            {"stage": stage, "index": b0, "category": params.get("category")})

            hooks = Hooks(step=on_step, want_preview=lambda k: ctx.wants_preview(done_steps[0] + k),
                          preview=on_preview, preview_points=512)
            t0 = time.perf_counter()
            out = sampler.run(cond, n_points=params["n_points"], steps=params["steps"],
                              guidance=params["guidance"], sampler=params["sampler"],
                              generator=torch.Generator(device=device).manual_seed(seeds[0]),
                              z_init=None if z_in is None else z_in.expand(b, -1),
                              h_init=None if h_in is None else h_in.expand(b, -1, -1),
                              strength=params.get("strength", 1.0), hooks=hooks,
                              z_noise=z_noise, h_noise=h_noise)
            done_steps[0] += 2 * params["steps"]
            dt = (time.perf_counter() - t0) / b
            arr = out.float().cpu().numpy() * scale + centre
            for i in range(b):
                meta = {"model": self.name, "task": task, "category": params.get("category"),
                        "prompt": params.get("prompt"), "seed": seeds[i], "steps": params["steps"],
                        "guidance": params["guidance"], "sampler": params["sampler"],
                        "n_points": params["n_points"], "seconds": round(dt, 4), "transform": None}
                if task == "refine":
                    meta.update(strength=params["strength"],
                                normalization={"centre": [float(c) for c in centre], "scale": float(scale)})
                results.append(Result("points", {"points": arr[i].astype(np.float32)}, meta))
        return results
