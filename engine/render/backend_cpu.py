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
    tri_ids, ray_ids, locations = _intersector(mesh).intersects_id(
        origins.reshape(-1, 3), dirs.reshape(-1, 3), multiple_hits=False, return_locations=True)
    tri = np.full(int(np.prod(shape)), -1, dtype=np.int64)
    points = np.zeros((tri.size, 3))
    tri[ray_ids] = tri_ids
    points[ray_ids] = locations
    return Hits(tri=tri.reshape(shape), points=points.reshape(shape + (3,)))
