"""Validation of user-supplied mesh and point arrays, raising the typed geometry errors.

Every public geometry function that accepts a user mesh runs it through here first so a
bad mesh gives the same error (code + advice) wherever it enters.
"""

from __future__ import annotations

import numpy as np

from engine.geometry.errors import BadArrayShape, BadFaceIndex, EmptyMesh, NonFiniteGeometry


def as_numpy(x) -> np.ndarray:
    """Return ``x`` (numpy array, torch tensor or nested sequence) as a numpy array."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def check_mesh(vertices, faces, *, what: str = "mesh") -> tuple[np.ndarray, np.ndarray]:
    """Check a triangle mesh and return it as (vertices f64 N×3, faces i64 M×3).

    Raises ``EmptyMesh`` (no vertices/faces), ``NonFiniteGeometry`` (NaN/inf coordinates),
    ``BadArrayShape`` (not N×3 / M×3) or ``BadFaceIndex`` (index out of range).
    """
    v = as_numpy(vertices)
    f = as_numpy(faces)
    if v.size == 0 or f.size == 0:
        raise EmptyMesh(f"The {what} is empty ({len(v)} vertices, {len(f)} faces).",
                        details={"n_vertices": int(len(v)), "n_faces": int(len(f))})
    if v.ndim != 2 or v.shape[1] != 3:
        raise BadArrayShape(f"The {what}'s vertices must be N×3, got shape {tuple(v.shape)}.")
    if f.ndim != 2 or f.shape[1] != 3:
        raise BadArrayShape(f"The {what}'s faces must be M×3 triangles, got shape {tuple(f.shape)}.")
    if not np.issubdtype(f.dtype, np.integer):
        raise BadArrayShape(f"The {what}'s faces must be integer indices, got dtype {f.dtype}.")
    v = v.astype(np.float64, copy=False)
    if not np.isfinite(v).all():
        n_bad = int((~np.isfinite(v)).any(axis=1).sum())
        raise NonFiniteGeometry(f"The {what} has {n_bad} vertices with NaN or infinite coordinates.",
                                details={"n_bad_vertices": n_bad})
    f = f.astype(np.int64, copy=False)
    if f.min() < 0 or f.max() >= len(v):
        raise BadFaceIndex(f"The {what}'s faces index vertices in [{int(f.min())}, {int(f.max())}] "
                           f"but it has {len(v)} vertices.")
    return np.ascontiguousarray(v), np.ascontiguousarray(f)


def check_points(points, *, what: str = "query points") -> np.ndarray:
    """Check a point array and return it as f64 P×3 (P may be 0)."""
    p = as_numpy(points)
    if p.ndim != 2 or p.shape[1] != 3:
        raise BadArrayShape(f"The {what} must be P×3, got shape {tuple(p.shape)}.")
    p = p.astype(np.float64, copy=False)
    if not np.isfinite(p).all():
        raise NonFiniteGeometry(f"The {what} contain NaN or infinite coordinates.")
    return np.ascontiguousarray(p)
