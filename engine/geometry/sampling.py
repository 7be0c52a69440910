"""Uniform random sampling of points (with normals) on a triangle mesh surface."""

from __future__ import annotations

import numpy as np
import trimesh

from engine.geometry.errors import BadArrayShape, EmptyMesh
from engine.geometry.validate import check_mesh


def sample_surface(vertices, faces, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``n`` points uniformly by area on a triangle mesh (``trimesh.sample``).

    Each point picks a face with probability proportional to its area, then a uniform
    position inside it; its normal is the unit normal of that face as wound (right-hand
    rule), so an outward-oriented mesh gives outward normals. Deterministic per ``seed``.

    Args:
        vertices: ``N × 3`` mesh vertices.
        faces: ``M × 3`` triangle vertex indices.
        n: number of points (>= 0).
        seed: seed of the random generator.

    Returns:
        points float32 ``n × 3``, normals float32 ``n × 3`` (unit length).

    Raises:
        EmptyMesh when the mesh is empty or has zero total area; BadArrayShape for a
        negative ``n``; the errors of ``check_mesh`` for malformed input.
    """
    if isinstance(n, bool) or int(n) != n or n < 0:
        raise BadArrayShape(f"The number of samples must be a non-negative integer, got {n!r}.")
    v, f = check_mesh(vertices, faces)
    mesh = trimesh.Trimesh(v, f, process=False, validate=False)
    if not mesh.area > 0:
        raise EmptyMesh("The mesh has zero surface area, so no points can be sampled on it.")
    points, face = trimesh.sample.sample_surface(mesh, int(n), seed=seed)
    normals = mesh.face_normals[face]
    return np.asarray(points, dtype=np.float32), np.asarray(normals, dtype=np.float32)
