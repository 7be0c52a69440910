"""Batched, differentiable marching tetrahedra in torch (CPU and CUDA).

Written here rather than taken from a library because none of the maintained options fits:
kaolin's ``marching_tetrahedra`` needs kaolin's CUDA build (not on PyPI for this torch),
and scikit-image / trimesh only march cubes on numpy grids (no tetrahedra, no batch, no
gradients). The algorithm follows DMTet (Shen et al. 2021) as used by MeshDiffusion.

Conventions: ``sdf < 0`` is inside, ``sdf >= 0`` outside (a vertex with sdf exactly 0 counts
as outside, so every crossing edge has one strictly negative end and the interpolation
never divides by zero). Output faces are oriented so their normals (right-hand rule)
point toward positive SDF, i.e. outward for a closed surface.

Why it is watertight: a surface vertex is created once per *grid edge* whose ends have
different signs, keyed by the sorted pair of grid vertex indices (and the batch item), so
the two, three, ... tetrahedra sharing that edge reuse the same vertex. Since the Kuhn
grid is conforming (see ``tetgrid.py``), every surface edge inside the grid is shared by
exactly two triangles, and the tets around a crossing edge (all of them cut) form one
ring, so each surface vertex has a single disc of faces: the surface is a closed
2-manifold whenever the SDF is positive on the grid boundary (see ``cap_boundary``).

Why it is differentiable: a surface vertex is ``p_a + w (p_b - p_a)`` with
``w = s_a / (s_a - s_b)``: linear in the vertex positions and smooth in the SDF values
(the DMTet formula), so gradients flow to both; the topology (which edges cross) is
piecewise constant and carries no gradient.
"""

from __future__ import annotations

import functools

import torch

from engine.geometry.errors import BadArrayShape, NonFiniteGeometry
from engine.geometry.tetgrid import apply_deformation, cap_boundary, make_tet_grid

# local vertex pairs of the 6 edges of a tetrahedron
TET_EDGES = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))


def _triangle_table() -> tuple[torch.Tensor, torch.Tensor]:
    """Triangles for each of the 16 inside/outside cases of a positively oriented tet.

    Returns ``(table 16×2×3 of local edge ids, -1 padded; counts 16)``. Case bit ``i`` is
    set when tet vertex ``i`` is inside. Built from a reference tet rather than typed in:
    each triangle is oriented so its normal points from the inside vertices toward the
    outside ones. For any positively oriented tet and any crossing points strictly inside
    the edges, that orientation is preserved (the outside vertex used never becomes
    coplanar with the triangle), so the table holds for every tet of the grid.
    """
    ref = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=torch.float64)
    edge_id = {frozenset(e): k for k, e in enumerate(TET_EDGES)}
    table = torch.full((16, 2, 3), -1, dtype=torch.int64)
    counts = torch.zeros(16, dtype=torch.int64)
    for case in range(16):
        inside = [i for i in range(4) if case >> i & 1]
        outside = [i for i in range(4) if not case >> i & 1]
        if len(inside) in (0, 4):
            continue
        if len(inside) == 1 or len(outside) == 1:
            lone, others = (inside[0], outside) if len(inside) == 1 else (outside[0], inside)
            tris = [[edge_id[frozenset((lone, o))] for o in others]]
        else:
            (a, b), (c, d) = inside, outside
            # consecutive edges of the cycle share a tet vertex: a quad around the tet
            quad = [edge_id[frozenset(e)] for e in ((a, c), (a, d), (b, d), (b, c))]
            tris = [[quad[0], quad[1], quad[2]], [quad[0], quad[2], quad[3]]]
        direction = ref[outside].mean(0) - ref[inside].mean(0)
        for t, tri in enumerate(tris):
            mids = torch.stack([ref[list(TET_EDGES[e])].mean(0) for e in tri])
            normal = torch.linalg.cross(mids[1] - mids[0], mids[2] - mids[0])
            if torch.dot(normal, direction) < 0:
                tri = [tri[0], tri[2], tri[1]]
            table[case, t] = torch.tensor(tri)
        counts[case] = len(tris)
    return table, counts


_TABLE, _COUNTS = _triangle_table()
_EDGES = torch.tensor(TET_EDGES, dtype=torch.int64)


def marching_tetrahedra(verts: torch.Tensor, tets: torch.Tensor, sdf: torch.Tensor
                        ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Extract the zero level set of SDFs sampled on a tetrahedral grid.

    Args:
        verts: grid vertex positions, ``V × 3`` shared by the batch or ``B × V × 3`` (e.g.
            deformed per item); float.
        tets: ``T × 4`` int64 vertex indices, positively oriented (``make_tet_grid``).
        sdf: ``B × V`` or ``V`` signed distances (negative inside), same device as verts.

    Returns:
        One ``(vertices float Nk × 3, faces int64 Mk × 3)`` per batch item (a list of
        length B, length 1 for a ``V`` sdf). A batch item with no sign change gives empty
        ``0 × 3`` tensors. Differentiable w.r.t. ``verts`` and ``sdf``.
    """
    if sdf.dim() == 1:
        sdf = sdf[None]
    if sdf.dim() != 2:
        raise BadArrayShape(f"sdf must be V or B×V, got shape {tuple(sdf.shape)}.")
    n_batch, n_verts = sdf.shape
    if verts.shape[-1] != 3 or verts.shape[-2] != n_verts or verts.dim() not in (2, 3):
        raise BadArrayShape(f"verts must be V×3 or B×V×3 with V={n_verts}, got {tuple(verts.shape)}.")
    if verts.dim() == 3 and verts.shape[0] != n_batch:
        raise BadArrayShape(f"verts batch {verts.shape[0]} does not match sdf batch {n_batch}.")
    if tets.dim() != 2 or tets.shape[1] != 4:
        raise BadArrayShape(f"tets must be T×4, got {tuple(tets.shape)}.")
    device = sdf.device
    tets = tets.to(device=device, dtype=torch.int64)

    with torch.no_grad():
        if not torch.isfinite(sdf).all():
            raise NonFiniteGeometry("The SDF values contain NaN or infinity.")
        inside = sdf < 0  # B×V
        # case code per (item, tet), built one corner at a time: a B×T×4 temporary
        # would take 200 MB at R=128, B=4
        corners = tets.t().contiguous()
        inside_u8 = inside.to(torch.uint8)
        code_all = inside_u8[:, corners[0]]  # B×T case code, bit i = corner i inside
        for corner in range(1, 4):
            code_all |= inside_u8[:, corners[corner]] << corner
        straddle = (code_all > 0) & (code_all < 15)
        b_idx, t_idx = straddle.nonzero(as_tuple=True)
        code = code_all[b_idx, t_idx].long()
        edges = tets[t_idx][:, _EDGES.to(device)]  # N×6×2 grid vertex ids
        lo = edges.min(-1).values
        hi = edges.max(-1).values
        crossing = inside[b_idx[:, None], lo] != inside[b_idx[:, None], hi]  # N×6
        keys = (b_idx[:, None] * n_verts + lo) * n_verts + hi
        ukeys, inverse = torch.unique(keys[crossing], return_inverse=True)
        vid = torch.full_like(keys, -1)
        vid[crossing] = inverse
        tri_local = _TABLE.to(device)[code]  # N×2×3 local edge ids (-1 pad)
        n_tri = _COUNTS.to(device)[code]
        keep = torch.arange(2, device=device)[None] < n_tri[:, None]  # N×2
        faces = vid.gather(1, tri_local.clamp_min(0).reshape(-1, 6)).reshape(-1, 2, 3)[keep]
        face_batch = b_idx[:, None].expand(-1, 2)[keep]
        vb = ukeys // (n_verts * n_verts)
        rem = ukeys % (n_verts * n_verts)
        va, vc = rem // n_verts, rem % n_verts  # va < vc; exactly one of them is inside

    s_a = sdf[vb, va]
    s_c = sdf[vb, vc]
    p_a = verts[vb, va] if verts.dim() == 3 else verts[va]
    p_c = verts[vb, vc] if verts.dim() == 3 else verts[vc]
    w = (s_a / (s_a - s_c))[:, None]
    points = p_a + w * (p_c - p_a)

    v_counts = torch.bincount(vb, minlength=n_batch).tolist()
    f_counts = torch.bincount(face_batch, minlength=n_batch).tolist()
    out: list[tuple[torch.Tensor, torch.Tensor]] = []
    v_start = 0
    for pts, fcs, nv in zip(points.split(v_counts), faces.split(f_counts), v_counts):
        out.append((pts, fcs - v_start))
        v_start += nv
    return out


@functools.lru_cache(maxsize=4)
def _cached_grid(resolution: int, bound: float, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    # grids are rebuilt often by pipelines (1 s at R=128): keep the last few; never handed out
    return make_tet_grid(resolution, device=device, bound=bound)


def extract_meshes(sdf: torch.Tensor, resolution: int, deform: torch.Tensor | None = None,
                   bound: float = 1.0, close: bool = True, max_fraction: float = 0.45
                   ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Meshes from SDF (and deformation) values on the standard grid: MeshDiffusion's decoder.

    Builds (and caches) ``make_tet_grid(resolution, bound=bound)`` on the SDF's device,
    applies ``deform`` with :func:`~engine.geometry.tetgrid.apply_deformation` when given,
    clamps the grid boundary positive with :func:`~engine.geometry.tetgrid.cap_boundary`
    when ``close`` (so every mesh is watertight), then runs :func:`marching_tetrahedra`.

    Args:
        sdf: ``V`` or ``B × V`` SDF values, ``V = (resolution + 1)^3`` in grid order.
        resolution: grid resolution ``R``.
        deform: optional raw offsets ``V × 3`` or ``B × V × 3`` (tanh-bounded).
        bound: half side of the gridded cube.
        close: cap surfaces cut by the grid boundary.
        max_fraction: deformation bound, fraction of a cell.

    Returns:
        One ``(vertices float Nk × 3, faces int64 Mk × 3)`` per item; differentiable w.r.t.
        ``sdf`` and ``deform``.
    """
    verts, tets = _cached_grid(int(resolution), float(bound), str(sdf.device))
    if sdf.shape[-1] != verts.shape[0]:
        raise BadArrayShape(f"sdf has {sdf.shape[-1]} values per item; the R={resolution} grid has "
                            f"{verts.shape[0]} vertices.")
    if deform is not None:
        verts = apply_deformation(verts, deform, resolution, max_fraction=max_fraction, bound=bound)
        if verts.dim() == 3 and sdf.dim() == 1:
            sdf = sdf[None].expand(verts.shape[0], -1)
    if close:
        sdf = cap_boundary(sdf, resolution)
    return marching_tetrahedra(verts, tets, sdf)
