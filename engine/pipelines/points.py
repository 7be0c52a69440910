"""The ``points`` model: LION-style latent point diffusion served as a pipeline.

Tasks:

- ``generate``: ``category`` (or ``prompt`` naming one; absent: unconditional), ``count``
  (1-64), ``seed`` (shape ``i`` starts from the noise of ``seed + i``; drawn and recorded
  when absent), ``steps`` (per prior, 1-1000, default 25), ``guidance`` (classifier-free
  guidance scale, 0-20, default: the checkpoint's ``diffusion.guidance``; 1 = none), ``n_points`` (16-200000, default 2048),
  ``sampler`` (``dpmsolver++`` default, or ``ddim``).
- ``refine`` (SDEdit): the object travels as arrays ``vertices`` (f32 N×3) + ``faces``
  (i32 M×3), or ``points`` (f32 N×3). It is sampled (2048 points), fitted to the training
  frame, encoded, its latents noised to ``strength`` in [0, 1] (0 = its reconstruction,
  1 = a fresh sample) and denoised with the optional ``category``/``prompt``; the result is
  mapped back to the object's own frame (centre and scale restored, recorded in ``meta``).
- ``interpolate``: two objects, as arrays ``a_vertices`` + ``a_faces`` (or ``a_points``) and
  ``b_vertices`` + ``b_faces`` (or ``b_points``), each checked, sampled (2048 points) and
  fitted to the training frame like refine's input; both are encoded, DDIM-inverted to noise,
  the noises slerped and sampled back (``engine.models.points.sampler.interpolate``):
  ``count`` (2-32, default 5) shapes from A to B, in the canonical frame (the client places
  them). Params: ``count``, ``steps``, ``seed``, ``n_points``, optional ``category``/``prompt``.

Every task takes ``output``: ``"points"`` (default; results are ``points`` f32 N×3) or
``"mesh"`` (each point cloud is reconstructed into a watertight mesh by
``engine.geometry.points_to_mesh`` at ``mesh_resolution`` 32-128, default 64; results are
``mesh``). Previews: the decoded x0 estimate (512 points) while the point prior denoises.
Weights load on first use and stay cached per device; ``status()`` reads no weights and
this module imports no torch (the engine lists models without it).
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

from engine.errors import InvalidRequest, LatentforgeError, ModelUnavailable
from engine.models.points.checkpoint import CONFIG as _CONFIG
from engine.models.points.checkpoint import checkpoint_complete
from engine.models.points.errors import RefineInputMissing
from engine.pipelines.base import TASKS, JobContext, Result

DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "points"
CHECKPOINT_ENV = "LATENTFORGE_POINTS_CHECKPOINT"
MAX_COUNT = 64
MAX_SEED = 2**31 - 1
BATCH = {"cpu": 16, "cuda": 64}   # shapes per sampler run: CPU caches favour small batches, GPUs large ones
REFINE_POINTS = 2048
MAX_INTERPOLATE = 32
OUTPUTS = ("points", "mesh")
MESH_RESOLUTION = (32, 128, 64)   # min, max, default
_VIEWS = "the points model makes point clouds; novel views need the `views` model"
_POPULATE = "populate lays out procedural meshes; use the `procedural` model"


def checkpoint_dir() -> Path:
    return Path(os.environ.get(CHECKPOINT_ENV) or DEFAULT_CHECKPOINT)


class InterpolateInputMissing(RefineInputMissing):
    """An interpolate job lacks one of its two objects."""

    code = "points.interpolate_input_missing"
    advice = ("Send each object as arrays `a_vertices` + `a_faces` (or `a_points`) and "
              "`b_vertices` + `b_faces` (or `b_points`).")


def _side(arrays: dict[str, Any], side: str) -> dict[str, np.ndarray]:
    """Arrays ``{side}_vertices``/``{side}_faces``/``{side}_points`` without the prefix."""
    return {k: np.asarray(arrays[f"{side}_{k}"]) for k in ("vertices", "faces", "points") if f"{side}_{k}" in arrays}


_REWORD = (("object to refine", "object"), ("point cloud to refine", "point cloud"),
           ("points to refine", "points"), ("Refine needs", "Interpolation needs"), ("refine job", "job"))


def _for_side(exc: LatentforgeError, side: str) -> LatentforgeError:
    """The same error (class, code, details) worded for shape A or B of an interpolation."""
    msg, advice = exc.message, exc.advice
    for old, new in _REWORD:
        msg, advice = msg.replace(old, new), advice.replace(old, new)
    out = type(exc)(f"Shape {side.upper()}: {msg}", advice, code=exc.code,
                    details=dict(exc.details, shape=side))
    return out


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
    """Generate, refine and interpolate point clouds (or meshes made from them) with the trained point model."""

    name = "points"
    tasks = ("generate", "refine", "interpolate")
    kinds = ("points", "mesh")

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
        ok, reason = checkpoint_complete(self.checkpoint)
        if ok and self._config() is None:
            ok, reason = False, f"config.json in {self.checkpoint} is not valid JSON"
        tasks = {t: {"available": ok and t in self.tasks, "reason": reason} for t in TASKS}
        tasks["views"]["reason"] = _VIEWS
        tasks["populate"]["reason"] = _POPULATE
        return {"available": ok, "reason": reason, "tasks": tasks,
                "categories": self.categories() if ok else [], "checkpoint": str(self.checkpoint)}

    def default_guidance(self) -> float:
        """The checkpoint's own guidance scale (``diffusion.guidance`` in its config), else 1.5."""
        cfg = self._config() or {}
        try:
            return float(cfg.get("diffusion", {}).get("guidance", 1.5))
        except (TypeError, ValueError):
            return 1.5

    # ---- validation ----------------------------------------------------------------

    def _require(self) -> None:
        from engine.models.points.errors import PointsCheckpointMissing
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
        allowed = {"category", "prompt", "count", "seed", "steps", "guidance", "n_points", "sampler",
                   "output", "mesh_resolution"}
        if task == "refine":
            allowed |= {"strength", "input"}
        if task == "interpolate":  # unguided DDIM both ways: no guidance or sampler choice
            allowed = (allowed - {"guidance", "sampler"}) | {"input_a", "input_b"}
        if params.get("image") is not None:
            from engine.models.points.errors import ImageConditionUnsupported
            raise ImageConditionUnsupported("The points checkpoint is conditioned on categories, not images.")
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise InvalidRequest(f"Unknown parameter(s) for points {task}: {', '.join(unknown)}.",
                                 f"Known: {', '.join(sorted(allowed))}.")
        seed = _int(params, "seed", None, 0, MAX_SEED - MAX_COUNT)
        counts = (5, 2, MAX_INTERPOLATE) if task == "interpolate" else (1, 1, MAX_COUNT)
        out = {
            "category": self._category(params),
            "prompt": params.get("prompt"),
            "count": _int(params, "count", *counts),
            "seed": secrets.randbelow(MAX_SEED - MAX_COUNT) if seed is None else seed,
            "steps": _int(params, "steps", 25, 1, 1000),
            "guidance": _float(params, "guidance", self.default_guidance(), 0.0, 20.0),
            "n_points": _int(params, "n_points", 2048, 16, 200_000),
            "sampler": params.get("sampler", "dpmsolver++"),
        }
        if task == "interpolate":
            out.update(guidance=1.0, sampler="ddim")
        if out["sampler"] not in ("dpmsolver++", "ddim"):
            raise InvalidRequest(f"'sampler' must be 'dpmsolver++' or 'ddim', got {out['sampler']!r}.")
        out["output"] = params.get("output", "points")
        if out["output"] not in OUTPUTS:
            raise InvalidRequest(f"'output' must be 'points' or 'mesh', got {out['output']!r}.")
        out["mesh_resolution"] = _int(params, "mesh_resolution", MESH_RESOLUTION[2], *MESH_RESOLUTION[:2])
        if out["output"] == "mesh":
            import importlib.util
            if importlib.util.find_spec("engine.geometry.points_to_mesh") is None:
                raise ModelUnavailable("Mesh output is not available: the engine has no points-to-mesh "
                                       "reconstruction (engine/geometry/points_to_mesh.py) installed.",
                                       "Ask for `output: \"points\"`, or update the engine.")
        if task == "refine":
            from engine.models.points.inputs import check_sizes
            out["strength"] = _float(params, "strength", 0.5, 0.0, 1.0)
            clean = {k: np.asarray(v) for k, v in arrays.items() if k in ("vertices", "faces", "points")}
            out["input"] = check_sizes(clean)
            out["arrays"] = clean
        if task == "interpolate":
            from engine.models.points.inputs import check_sizes
            clean = {}
            for side in ("a", "b"):
                got = _side(arrays, side)
                if not got:
                    raise InterpolateInputMissing(
                        f"The interpolate job carries no shape {side.upper()}: send `{side}_vertices` + "
                        f"`{side}_faces` or `{side}_points`.", details={"shape": side})
                try:
                    out[f"input_{side}"] = check_sizes(got)
                except LatentforgeError as exc:
                    raise _for_side(exc, side) from None
                clean.update({f"{side}_{k}": v for k, v in got.items()})
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
        if task == "interpolate":
            return self._interpolate(model, params, ctx, device)
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
        canonical: list[np.ndarray] = []
        done_steps = [0]
        chunk = BATCH["cuda" if str(device).startswith("cuda") else "cpu"]
        n_batches = (count + chunk - 1) // chunk
        for b0 in range(0, count, chunk):
            b = min(chunk, count - b0)
            seeds = [seed + b0 + i for i in range(b)]
            D, M = model.global_latent_dim, model.cfg.vae.n_latent_points
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
                              z_noise=z_noise, h_noise=h_noise,
                              # Fresh category samples only: a refined shape keeps its proportions.
                              category_ids=(torch.full((b,), cid, dtype=torch.long)
                                            if task == "generate" and cid >= 0 else None))
            done_steps[0] += 2 * params["steps"]
            dt = (time.perf_counter() - t0) / b
            canon = out.float().cpu().numpy()
            arr = canon * scale + centre
            for i in range(b):
                meta = {"model": self.name, "task": task, "category": params.get("category"),
                        "prompt": params.get("prompt"), "seed": seeds[i], "steps": params["steps"],
                        "guidance": params["guidance"], "sampler": params["sampler"],
                        "n_points": params["n_points"], "seconds": round(dt, 4), "transform": None}
                if task == "refine":
                    meta.update(strength=params["strength"],
                                normalization={"centre": [float(c) for c in centre], "scale": float(scale)})
                results.append(Result("points", {"points": arr[i].astype(np.float32)}, meta))
                canonical.append(canon[i])
        return self._output(results, canonical, params, ctx, centre, scale)

    # ---- interpolation -------------------------------------------------------------

    def _interpolate(self, model: Any, params: dict[str, Any], ctx: JobContext, device: str) -> list[Result]:
        """``count`` shapes from A to B (DDIM inversion + slerp), canonical frame."""
        import torch

        from engine.models.points.inputs import normalize, sample_input
        from engine.models.points.sampler import Hooks, LatentSampler, interpolate

        seed, count, steps = params["seed"], params["count"], params["steps"]
        ends, norms = [], {}
        for side in ("a", "b"):
            try:
                pts = sample_input(_side(params["arrays"], side), REFINE_POINTS, seed)
                pts, centre, scale = normalize(pts)
            except LatentforgeError as exc:
                raise _for_side(exc, side) from None
            ends.append(torch.from_numpy(pts).to(device))
            norms[side] = {"centre": [float(c) for c in centre], "scale": float(scale)}
        ctx.progress("load", 1, 1)

        def on_step(_stage: str, k: int, total: int) -> None:
            ctx.check_cancelled()
            ctx.progress("interpolate", k, total)

        def on_preview(points: torch.Tensor, stage: str) -> None:
            mid = points[points.shape[0] // 2].float().cpu().numpy()
            ctx.preview("points", {"points": mid.astype(np.float32)}, {"stage": stage, "index": count // 2})

        # Inversion (global + points) then sampling (global + points), unguided: 4 × steps.
        hooks = Hooks(step=on_step, want_preview=lambda k: ctx.wants_preview(k), preview=on_preview,
                      preview_points=512)
        sampler = LatentSampler(model)
        cats = model.cfg.cond.categories
        cid = cats.index(params["category"]) if params.get("category") else -1
        cond = sampler.condition(torch.full((1,), cid, dtype=torch.long))
        ctx.check_cancelled()
        t0 = time.perf_counter()
        out = interpolate(sampler, ends[0], ends[1], count, cond=cond, steps=steps, n_points=params["n_points"],
                          generator=torch.Generator(device=device).manual_seed(seed), hooks=hooks)
        dt = (time.perf_counter() - t0) / count
        canon = out.float().cpu().numpy()
        weights = np.linspace(0.0, 1.0, count)
        results = []
        for i in range(count):
            meta = {"model": self.name, "task": "interpolate", "category": params.get("category"),
                    "prompt": params.get("prompt"), "seed": seed, "steps": steps, "n_points": params["n_points"],
                    "index": i, "weight": float(weights[i]), "seconds": round(dt, 4), "transform": None,
                    "normalization": norms, "frame": "canonical"}
            results.append(Result("points", {"points": canon[i].astype(np.float32)}, meta))
        return self._output(results, list(canon), params, ctx, np.zeros(3), 1.0)

    # ---- mesh output ---------------------------------------------------------------

    def _output(self, results: list[Result], canonical: list[np.ndarray], params: dict[str, Any],
                ctx: JobContext, centre: np.ndarray, scale: float) -> list[Result]:
        """``results`` as they are (``output: points``), or each reconstructed into a mesh.

        The surface is reconstructed from the canonical-frame points (the frame the
        resolution grid is sized for), then given the results' frame (``* scale + centre``).
        """
        if params.get("output", "points") != "mesh":
            return results
        from engine.geometry.points_to_mesh import points_to_mesh

        res, meshes = params.get("mesh_resolution", MESH_RESOLUTION[2]), []
        for i, (r, pts) in enumerate(zip(results, canonical)):
            ctx.check_cancelled()
            try:
                v, f = points_to_mesh(np.asarray(pts, np.float32), resolution=res)
            except LatentforgeError:
                raise
            except Exception as exc:  # a reconstruction bug must still reach the user as a typed error
                from engine.geometry.errors import ReconstructionFailed
                raise ReconstructionFailed(f"The mesh could not be reconstructed from result {i}'s points "
                                           f"({type(exc).__name__}: {exc}).", details={"index": i}) from exc
            v = np.asarray(v, np.float64) * scale + centre
            meta = dict(r.meta, output="mesh", mesh_resolution=res)
            meshes.append(Result("mesh", {"vertices": v.astype(np.float32),
                                          "faces": np.asarray(f).astype(np.int32)}, meta))
            ctx.progress("mesh", i + 1, len(results))
        return meshes
