"""Two small engine pipelines the add-on tests plug in through ``LATENTFORGE_EXTRA_PIPELINES``.

No learned refine or view model is installed yet, so the add-on's refine and views paths
(object swap keeping transform/name/materials/collections; image planes + cameras) are
exercised end to end with these deterministic, real computations, registered through
the engine's documented hook for development pipelines:

- ``smooth_test`` (refine): Laplacian smoothing of the object's mesh, ``strength`` sets
  the number of iterations; streams the current vertices as ``points`` previews;
- ``render_views_test`` (views): renders the object's mesh from the requested spherical
  poses with ``engine.render.renderer.render_mesh``.

They are named ``*_test`` so nobody mistakes them for models. The tests at the bottom
check their arithmetic without Blender.
"""

from __future__ import annotations

from typing import Any

import numpy as np

TASKS = ("generate", "refine", "views", "populate")


def _mesh_input(params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    from engine.errors import InvalidMesh

    arrays = params.get("arrays") or {}
    v, f = arrays.get("vertices"), arrays.get("faces")
    if v is None or f is None:
        raise InvalidMesh("Send the object's mesh as 'vertices' and 'faces' arrays.")
    v = np.asarray(v, dtype=np.float32)
    f = np.asarray(f, dtype=np.int64)
    if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3 or len(f) == 0:
        raise InvalidMesh("The mesh needs N×3 vertices and at least one triangle.")
    if f.min() < 0 or f.max() >= len(v):
        raise InvalidMesh("Face indices point outside the vertices.")
    return v, f


def laplacian_smooth(vertices: np.ndarray, faces: np.ndarray, iterations: int, lam: float = 0.5) -> np.ndarray:
    """Move each vertex ``lam`` of the way to the mean of its edge neighbours, ``iterations`` times."""
    v = vertices.astype(np.float64).copy()
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = np.concatenate([edges, edges[:, ::-1]])
    degree = np.bincount(edges[:, 0], minlength=len(v)).astype(np.float64)
    has = degree > 0
    for _ in range(iterations):
        acc = np.zeros_like(v)
        np.add.at(acc, edges[:, 0], v[edges[:, 1]])
        mean = acc[has] / degree[has, None]
        v[has] += lam * (mean - v[has])
    return v.astype(np.float32)


class SmoothRefinePipeline:
    """Refine = Laplacian smoothing (a real, deterministic geometric operation)."""

    name = "smooth_test"
    tasks = ("refine",)
    kinds = ("mesh",)

    def status(self) -> dict[str, Any]:
        tasks = {t: {"available": t in self.tasks, "reason": "" if t in self.tasks else "test pipeline: refine only"}
                 for t in TASKS}
        return {"available": True, "reason": "", "tasks": tasks}

    def validate(self, task: str, params: dict[str, Any]) -> dict[str, Any]:
        from engine.errors import InvalidRequest

        _mesh_input(params)
        strength = params.get("strength", 0.5)
        if not isinstance(strength, (int, float)) or not 0.0 <= strength <= 1.0:
            raise InvalidRequest("'strength' must be a number in [0, 1].")
        return dict(params, strength=float(strength))

    def run(self, task: str, params: dict[str, Any], ctx: Any) -> list:
        from engine.pipelines.base import Result

        v, f = _mesh_input(params)
        steps = max(1, int(round(params["strength"] * 10)))
        for i in range(steps):
            ctx.check_cancelled()
            v = laplacian_smooth(v, f, 1)
            if ctx.wants_preview(i + 1):
                ctx.preview("points", {"points": v}, {"index": 0})
            ctx.progress("smooth", i + 1, steps)
        return [Result("mesh", {"vertices": v, "faces": f.astype(np.int32)},
                       {"prompt": params.get("prompt"), "iterations": steps})]


class RenderViewsPipeline:
    """Views = renders of the input mesh from the requested poses (no learned model)."""

    name = "render_views_test"
    tasks = ("views",)
    kinds = ("images",)

    def status(self) -> dict[str, Any]:
        tasks = {t: {"available": t in self.tasks, "reason": "" if t in self.tasks else "test pipeline: views only"}
                 for t in TASKS}
        return {"available": True, "reason": "", "tasks": tasks}

    def validate(self, task: str, params: dict[str, Any]) -> dict[str, Any]:
        from engine.errors import InvalidRequest

        _mesh_input(params)
        poses = params.get("poses")
        if not isinstance(poses, list) or not poses or not all(isinstance(p, list) and len(p) == 3 for p in poses):
            raise InvalidRequest("'poses' must be a non-empty list of [polar, azimuth, radius].")
        return params

    def run(self, task: str, params: dict[str, Any], ctx: Any) -> list:
        from engine.pipelines.base import Result
        from engine.render.cameras import spherical_to_c2w
        from engine.render.renderer import render_mesh

        v, f = _mesh_input(params)
        poses = np.asarray(params["poses"], dtype=np.float64)
        c2w = spherical_to_c2w(poses[:, 0], poses[:, 1], poses[:, 2])
        out = render_mesh(v, f, c2w, size=48, fov_deg=40.0, backend="cpu")
        rgba = np.concatenate([out["rgb"], np.where(out["mask"], 255, 0).astype(np.uint8)[..., None]], axis=-1)
        ctx.progress("render", 1, 1)
        return [Result("images", {"images": np.ascontiguousarray(rgba), "poses": c2w.astype(np.float32)},
                       {"fov_deg": 40.0})]


# ------------------------------------------------------------------ checks of the pipelines


def test_laplacian_smooth_flattens_a_bump():
    xs = np.linspace(-1, 1, 9, dtype=np.float32)
    x, y = np.meshgrid(xs, xs)
    z = np.zeros_like(x)
    z[4, 4] = 1.0  # one spike in a flat grid
    v = np.stack([x.ravel(), y.ravel(), z.ravel()], 1)
    idx = np.arange(81).reshape(9, 9)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel(), idx[1:, :-1].ravel()
    f = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    out = laplacian_smooth(v, f, 3)
    assert out.shape == v.shape
    assert 0.0 < out[40, 2] < 0.5  # the spike came down
    assert out[:, 2].max() < 1.0
