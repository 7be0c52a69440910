"""Turning a user's object (mesh or points) into a normalized point cloud for refine,
and mapping results back to the object's own frame."""

from __future__ import annotations

import numpy as np

from .errors import DegenerateInput, InputTooLarge, RefineInputMissing

MAX_VERTICES = 5_000_000
MAX_FACES = 10_000_000
MAX_POINTS = 5_000_000


def check_sizes(arrays: dict[str, np.ndarray]) -> str:
    """Which input the arrays hold (``mesh`` or ``points``); cheap size checks only."""
    if "vertices" in arrays:
        v, f = arrays["vertices"], arrays.get("faces")
        if f is None or np.asarray(f).size == 0:
            from engine.geometry.errors import EmptyMesh
            raise EmptyMesh("The object to refine has no faces.",
                            "Refine needs a surface: give a mesh with faces, or send its vertices as `points`.")
        if len(v) > MAX_VERTICES or len(f) > MAX_FACES:
            raise InputTooLarge(f"The mesh has {len(v)} vertices and {len(f)} faces; the limit is "
                                f"{MAX_VERTICES} vertices and {MAX_FACES} faces.",
                                details={"n_vertices": int(len(v)), "n_faces": int(len(f))})
        return "mesh"
    if "points" in arrays:
        if len(arrays["points"]) > MAX_POINTS:
            raise InputTooLarge(f"The point cloud has {len(arrays['points'])} points; the limit is {MAX_POINTS}.")
        return "points"
    raise RefineInputMissing("The refine job carries no `vertices`/`faces` or `points` arrays.")


def sample_input(arrays: dict[str, np.ndarray], n: int, seed: int) -> np.ndarray:
    """``n`` points (f32 n×3, object frame) on the object's surface (mesh) or drawn from its points."""
    kind = check_sizes(arrays)
    if kind == "mesh":
        from engine.geometry.sampling import sample_surface
        from engine.geometry.validate import check_mesh
        v, f = check_mesh(arrays["vertices"], arrays["faces"], what="object to refine")
        if np.ptp(v, axis=0).max() <= 1e-9:
            raise DegenerateInput("All vertices of the object to refine are at the same place.")
        try:
            pts, _ = sample_surface(v, f, n, seed=seed)
        except Exception as exc:
            from engine.errors import LatentforgeError
            if isinstance(exc, LatentforgeError) and "area" not in str(exc).lower():
                raise
            raise DegenerateInput("The object's faces have no area to sample points from.") from exc
        return np.asarray(pts, np.float32)
    from engine.geometry.validate import check_points
    p = check_points(arrays["points"], what="points to refine")
    if len(p) < 2 or np.ptp(p, axis=0).max() <= 1e-9:
        raise DegenerateInput(f"The point cloud to refine has {len(p)} point(s) with no extent.")
    idx = np.random.default_rng(seed).choice(len(p), n, replace=len(p) < n)
    return p[idx].astype(np.float32)


def normalize(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Fit to the training frame (bounding box centred, longest side 2): (normalized, centre, scale)."""
    lo, hi = points.min(0), points.max(0)
    centre = (lo + hi) / 2
    scale = float((hi - lo).max() / 2)
    if scale <= 1e-9:
        raise DegenerateInput("The object to refine has no extent.")
    return ((points - centre) / scale).astype(np.float32), centre.astype(np.float64), scale
