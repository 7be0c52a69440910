"""Signed distance, winding number and occupancy of a triangle mesh at query points.

Backed by libigl (the ``libigl`` PyPI package), which is maintained and well tested:

- unsigned distance: exact closest point on the triangles through libigl's AABB tree;
- sign / inside test: the *generalized winding number* (Jacobson et al. 2013) evaluated
  with libigl's fast hierarchical approximation (Barill et al. 2018, "Fast Winding Numbers
  for Soups and Clouds": exact near field, Taylor-expanded far field on an octree).

The winding number is 1 inside a closed, outward-oriented mesh and 0 outside, and degrades
gracefully for open surfaces, soups and self-intersections (values in between): a point
is inside when its winding number exceeds 0.5. That is why non-watertight meshes get a
robust sign, where a ray-parity test would flip whole regions through one hole.

Measured (2-core CPU): 274,625 points (R=64 grid vertices) against an 81,920-face sphere
in ~2.5 s; see docs/geometry.md and scripts/bench_geometry.py.
"""

from __future__ import annotations

import numpy as np

from engine.geometry.validate import check_mesh, check_points

# queries per libigl call: bounds the temporary closest-point arrays (3 doubles per point)
_CHUNK = 1 << 20


def _igl():
    import igl  # imported lazily: heavy native module, only needed here

    return igl


def winding_number(vertices, faces, points, *, exact: bool = False) -> np.ndarray:
    """Generalized winding number of a triangle mesh at query points.

    Args:
        vertices: ``N × 3`` mesh vertices (any float/array type, numpy or torch).
        faces: ``M × 3`` triangle vertex indices.
        points: ``P × 3`` query points.
        exact: sum the solid angle of every triangle (O(P·M)) instead of libigl's fast
            hierarchical approximation; for checking, not for large inputs.

    Returns:
        float64 ``(P,)`` winding numbers (≈1 inside, ≈0 outside an outward-oriented mesh).
    """
    v, f = check_mesh(vertices, faces)
    p = check_points(points)
    igl = _igl()
    if len(p) == 0:
        return np.zeros(0, dtype=np.float64)
    fn = igl.winding_number if exact else igl.fast_winding_number
    return np.concatenate([np.asarray(fn(v, f, p[i:i + _CHUNK])) for i in range(0, len(p), _CHUNK)])


def mesh_occupancy(vertices, faces, points, *, exact: bool = False) -> np.ndarray:
    """Inside test: ``True`` where the generalized winding number exceeds 0.5.

    Shapes: vertices ``N × 3``, faces ``M × 3``, points ``P × 3`` → bool ``(P,)``.
    """
    return winding_number(vertices, faces, points, exact=exact) > 0.5


def mesh_sdf(vertices, faces, points, *, exact_sign: bool = False) -> np.ndarray:
    """Signed distance from query points to a triangle mesh (negative inside).

    Args:
        vertices: ``N × 3`` mesh vertices (world units).
        faces: ``M × 3`` triangle vertex indices.
        points: ``P × 3`` query points (same units).
        exact_sign: use the exact (O(P·M)) winding number for the sign.

    Returns:
        float32 ``(P,)``: Euclidean distance to the closest point on the surface, negated
        where the generalized winding number exceeds 0.5.

    Raises:
        EmptyMesh, NonFiniteGeometry, BadArrayShape, BadFaceIndex (engine.geometry.errors).
    """
    v, f = check_mesh(vertices, faces)
    p = check_points(points)
    if len(p) == 0:
        return np.zeros(0, dtype=np.float32)
    igl = _igl()
    out = np.empty(len(p), dtype=np.float32)
    for i in range(0, len(p), _CHUNK):
        q = p[i:i + _CHUNK]
        dist = np.abs(np.asarray(igl.signed_distance(q, v, f, igl.SIGNED_DISTANCE_TYPE_UNSIGNED)[0]))
        wn = igl.winding_number(v, f, q) if exact_sign else igl.fast_winding_number(v, f, q)
        out[i:i + len(q)] = np.where(np.asarray(wn) > 0.5, -dist, dist)
    return out
