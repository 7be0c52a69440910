"""CPU render backend: ray casting with Embree through trimesh (``embreex``).

All rays of all cameras go to Embree in one call; Embree's BVH traversal runs in native
code, so the Python cost is only building the rays and reading back the hits. Without
``embreex`` trimesh's pure-numpy intersector is used (same results, much slower).
"""

from __future__ import annotations

import logging

import numpy as np
import trimesh

from engine.render.shading import Hits, camera_rays

log = logging.getLogger(__name__)


def has_embree() -> bool:
    """True when trimesh can use Embree (the ``embreex`` package)."""
    try:
        from trimesh.ray import ray_pyembree  # noqa: F401
        import embreex  # noqa: F401
    except ImportError:
        return False
    return True


def _intersector(mesh: trimesh.Trimesh):
    if has_embree():
        from trimesh.ray.ray_pyembree import RayMeshIntersector
        return RayMeshIntersector(mesh)
    log.warning("embreex is not installed: CPU rendering falls back to trimesh's slow ray tracer "
                "(pip install embreex)")
    from trimesh.ray.ray_triangle import RayMeshIntersector
    return RayMeshIntersector(mesh)


def cast(vertices: np.ndarray, faces: np.ndarray, c2w: np.ndarray, size: int, fov_deg: float) -> Hits:
    """First hit of each pixel's ray.

    Args:
        vertices: float64 ``N × 3``; faces: int64 ``M × 3``.
        c2w: float ``B × 4 × 4`` cameras; size: pixels per side; fov_deg: full angle.

    Returns:
        ``Hits`` with ``tri`` ``B × H × W`` (-1 = background) and world ``points``.
    """
    mesh = trimesh.Trimesh(vertices, faces, process=False, validate=False)
    origins, dirs = camera_rays(c2w, size, fov_deg)
    shape = dirs.shape[:-1]
    o, d = origins.reshape(-1, 3), dirs.reshape(-1, 3)
    # first-hit ids only (about twice as fast as asking trimesh for locations too); the
    # hit points come from intersecting each ray with its triangle's plane, in float64
    tri = np.asarray(_intersector(mesh).intersects_first(o, d), dtype=np.int64)
    hit = np.nonzero(tri >= 0)[0]
    corner = vertices[faces[tri[hit], 0]]
    normal = np.cross(vertices[faces[tri[hit], 1]] - corner, vertices[faces[tri[hit], 2]] - corner)
    denom = np.einsum("ij,ij->i", normal, d[hit])
    t = np.einsum("ij,ij->i", normal, corner - o[hit]) / np.where(denom == 0, 1.0, denom)
    # a ray grazing its triangle edge-on: take the ray point nearest to the triangle instead
    grazing = np.abs(denom) <= 1e-12 * np.linalg.norm(normal, axis=1)
    if grazing.any():
        centroid = vertices[faces[tri[hit[grazing]]]].mean(axis=1)
        t[grazing] = np.einsum("ij,ij->i", centroid - o[hit[grazing]], d[hit[grazing]])
    points = np.zeros((tri.size, 3))
    points[hit] = o[hit] + t[:, None] * d[hit]
    return Hits(tri=tri.reshape(shape), points=points.reshape(shape + (3,)))
