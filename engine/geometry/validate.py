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


def mesh_topology(faces, n_vertices: int | None = None) -> dict:
    """Watertightness and manifoldness of a triangle mesh, vectorized (fine for 10^5-10^6 faces).

    Returns a dict:
    - ``closed``: every undirected edge is shared by exactly two faces (watertight, edge-manifold),
    - ``consistent``: every directed edge occurs once and its reverse once (one orientation),
    - ``vertex_manifold``: the faces around every used vertex form a single disc (no pinches),
    - ``euler``: V - E + F over the used vertices (2 per sphere-like closed component),
    - ``n_components``: face-connected components (sharing an edge),
    - ``unused_vertices``: vertices no face refers to (only when ``n_vertices`` is given, else 0).
    A watertight, manifold, consistently oriented mesh has the first three True.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    f = np.asarray(as_numpy(faces), dtype=np.int64).reshape(-1, 3)
    if len(f) == 0:
        return {"closed": False, "consistent": False, "vertex_manifold": False, "euler": 0,
                "n_components": 0, "unused_vertices": int(n_vertices or 0)}
    used = np.unique(f)
    nv = int(max(n_vertices or 0, int(f.max()) + 1))
    a = f.reshape(-1)
    b = np.roll(f, -1, axis=1).reshape(-1)
    directed = a * nv + b
    d_unique, d_count = np.unique(directed, return_counts=True)
    reverse = b * nv + a
    und = np.minimum(a, b) * nv + np.maximum(a, b)
    u_unique, u_inverse, u_count = np.unique(und, return_inverse=True, return_counts=True)
    closed = bool((u_count == 2).all())
    pos = np.searchsorted(d_unique, reverse)
    pos = np.clip(pos, 0, len(d_unique) - 1)
    consistent = bool((d_count == 1).all() and (d_unique[pos] == reverse).all())

    # link of each vertex: nodes (v, u) for neighbours u, one link edge per face corner
    rolled = np.concatenate([f, np.roll(f, 1, axis=1), np.roll(f, 2, axis=1)])
    v, p, q = rolled.T
    nodes, inv = np.unique(np.concatenate([v * nv + p, v * nv + q]), return_inverse=True)
    i1, i2 = inv[: len(v)], inv[len(v):]
    degree = np.bincount(np.concatenate([i1, i2]), minlength=len(nodes))
    link = coo_matrix((np.ones(len(v)), (i1, i2)), shape=(len(nodes), len(nodes)))
    n_links, _ = connected_components(link, directed=False)
    vertex_manifold = bool((degree == 2).all() and n_links == len(used))

    face_of_edge = np.repeat(np.arange(len(f)), 3)
    order = np.argsort(u_inverse, kind="stable")
    e_sorted, f_sorted = u_inverse[order], face_of_edge[order]
    same = e_sorted[1:] == e_sorted[:-1]
    adj = coo_matrix((np.ones(int(same.sum())), (f_sorted[:-1][same], f_sorted[1:][same])),
                     shape=(len(f), len(f)))
    n_components, _ = connected_components(adj, directed=False)
    return {"closed": closed, "consistent": consistent, "vertex_manifold": vertex_manifold,
            "euler": int(len(used) - len(u_unique) + len(f)), "n_components": int(n_components),
            "unused_vertices": int(nv - len(used)) if n_vertices is not None else 0}
