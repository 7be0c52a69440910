"""Regular and deformable tetrahedral grids over the canonical cube [-1, 1]^3.

The grid has ``R + 1`` vertices per axis, so ``V = (R + 1)^3`` vertices, and each of the
``R^3`` cubes is split into 6 tetrahedra around its main diagonal (the Kuhn/Freudenthal
split), so ``T = 6 R^3`` tetrahedra. Every cube face is cut along the diagonal that joins
its lowest and highest corner, identically in both cubes that share it, so the grid is
conforming: neighbouring tetrahedra share whole faces, which is what lets marching
tetrahedra produce a watertight surface. Every tetrahedron is stored with positive
orientation: ``det[v1 - v0, v2 - v0, v3 - v0] > 0``.

=====  ==========  ===========
R      vertices    tetrahedra
=====  ==========  ===========
32     35,937      196,608
64     274,625     1,572,864
128    2,146,689   12,582,912
=====  ==========  ===========

Vertex ``(i, j, k)`` (integer lattice, x index first) has index ``(i*(R+1) + j)*(R+1) + k``
and position ``bound * (-1 + 2*(i, j, k)/R)`` (``bound`` = 1 by default).

Shapes fitted to [-1, 1]^3 touch the default grid's boundary; their surfaces close only
with a larger ``bound`` or after :func:`cap_boundary`.

MeshDiffusion (after DMTet) lets each vertex move by a bounded offset so the surface can
follow detail finer than the lattice; :func:`apply_deformation` applies those offsets.
"""

from __future__ import annotations

import itertools

import torch

from engine.geometry.errors import BadArrayShape, BadGridResolution

MAX_RESOLUTION = 256


def _cube_tets() -> torch.Tensor:
    """The 6 Kuhn tetrahedra of the unit cube, as corner bit-codes (x=4, y=2, z=1), shape 6×4.

    Each tet walks from corner (0,0,0) to (1,1,1) adding one axis at a time, in the order
    of a permutation of (x, y, z); odd permutations are flipped to positive orientation.
    """
    bits = (4, 2, 1)
    unit = {4: (1, 0, 0), 2: (0, 1, 0), 1: (0, 0, 1)}
    tets = []
    for perm in itertools.permutations(range(3)):
        c0 = 0
        c1 = c0 + bits[perm[0]]
        c2 = c1 + bits[perm[1]]
        c3 = 7
        e = torch.tensor([unit[bits[perm[0]]],
                          [a + b for a, b in zip(unit[bits[perm[0]]], unit[bits[perm[1]]])],
                          [1, 1, 1]], dtype=torch.float64)
        if torch.linalg.det(e) < 0:
            c1, c2 = c2, c1
        tets.append((c0, c1, c2, c3))
    return torch.tensor(tets, dtype=torch.int64)


def grid_counts(resolution: int) -> tuple[int, int]:
    """Return (number of vertices, number of tetrahedra) of a grid of resolution R."""
    r = int(resolution)
    return (r + 1) ** 3, 6 * r ** 3


def _check_resolution(resolution: int) -> int:
    if isinstance(resolution, bool) or int(resolution) != resolution:
        raise BadGridResolution(f"Grid resolution must be an integer, got {resolution!r}.")
    r = int(resolution)
    if not 1 <= r <= MAX_RESOLUTION:
        raise BadGridResolution(f"Grid resolution {r} is outside [1, {MAX_RESOLUTION}].")
    return r


def make_tet_grid(resolution: int, device: str | torch.device = "cpu", bound: float = 1.0
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Build the regular tetrahedral grid of resolution ``R`` over [-bound, bound]^3.

    Args:
        resolution: cubes per axis ``R`` (1..256).
        device: torch device of the returned tensors.
        bound: half side of the gridded cube (default 1: the canonical cube). A shape fitted
            to [-1, 1]^3 touches the default grid's boundary, where its SDF is ~0 or
            slightly negative, so its extracted surface is open there: use ``bound`` > 1
            (e.g. 1 + 2/R) or :func:`cap_boundary` for closed meshes.

    Returns:
        verts: float32 ``(R+1)^3 × 3`` vertex positions in [-bound, bound]^3 (lattice
            order, see module docstring).
        tets: int64 ``6 R^3 × 4`` vertex indices, each tetrahedron positively oriented.
    """
    r = _check_resolution(resolution)
    if not bound > 0:
        raise BadGridResolution(f"Grid bound must be positive, got {bound!r}.")
    n = r + 1
    lin = torch.linspace(-bound, bound, n, dtype=torch.float32, device=device)
    gx, gy, gz = torch.meshgrid(lin, lin, lin, indexing="ij")
    verts = torch.stack([gx, gy, gz], dim=-1).reshape(-1, 3)

    ar = torch.arange(r, device=device)
    ci, cj, ck = torch.meshgrid(ar, ar, ar, indexing="ij")
    base = ((ci * n + cj) * n + ck).reshape(-1, 1)  # lowest corner of each cube
    # index offset of each cube corner, by its bit-code (x=4, y=2, z=1)
    corner_off = torch.tensor([((c >> 2) & 1) * n * n + ((c >> 1) & 1) * n + (c & 1) for c in range(8)],
                              dtype=torch.int64, device=device)
    local = corner_off[_cube_tets().to(device)]  # 6×4
    tets = (base[:, None, :] + local[None]).reshape(-1, 4)
    return verts, tets


def cell_size(resolution: int, bound: float = 1.0) -> float:
    """Edge length of one grid cube, ``2 bound / R`` (world units)."""
    return 2.0 * bound / _check_resolution(resolution)


def boundary_mask(resolution: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """Bool ``(R+1)^3`` mask of the grid vertices on the faces of the gridded cube."""
    r = _check_resolution(resolution)
    idx = torch.arange(r + 1, device=device)
    on = (idx == 0) | (idx == r)
    return (on[:, None, None] | on[None, :, None] | on[None, None, :]).reshape(-1)


def cap_boundary(sdf: torch.Tensor, resolution: int, eps: float = 1e-6) -> torch.Tensor:
    """Make the SDF positive (>= ``eps``) on the grid boundary, so extracted surfaces close.

    A shape cut by the grid's cube then gets flat caps on the cube's faces instead of
    holes. ``sdf``: ``V`` or ``B × V`` on a grid of resolution ``R``; returns a new tensor
    (differentiable where it is not clamped).
    """
    mask = boundary_mask(resolution, sdf.device)
    if sdf.shape[-1] != mask.shape[0]:
        raise BadArrayShape(f"sdf has {sdf.shape[-1]} values per item, the R={resolution} grid {mask.shape[0]}.")
    return torch.where(mask, sdf.clamp_min(eps), sdf)


def apply_deformation(verts: torch.Tensor, deform: torch.Tensor, resolution: int,
                      max_fraction: float = 0.45, bound: float = 1.0) -> torch.Tensor:
    """Move grid vertices by bounded offsets (MeshDiffusion / DMTet style).

    ``offset = max_fraction * (2 bound / R) * tanh(deform)``, so each coordinate moves by
    less than ``max_fraction`` of a cell; tanh keeps it differentiable and saturating. Adversarial
    offsets above 1/6 of a cell per coordinate can already invert a Kuhn tetrahedron
    (computed exactly over the box corners); the default 0.45 follows DMTet/MeshDiffusion,
    which accept that. Marching tetrahedra stay well defined, but the surface may fold
    where tets invert: :func:`tet_volumes` finds them (e.g. for a regularizer).

    Args:
        verts: ``V × 3`` or ``B × V × 3`` grid vertex positions (from :func:`make_tet_grid`).
        deform: raw, unbounded offsets, same shape as ``verts`` or ``B × V × 3`` for ``V × 3`` verts.
        resolution: grid resolution ``R`` the vertices come from.
        max_fraction: bound of the offset as a fraction of the cell size ``2 bound / R`` (0 < f < 0.5).
        bound: the ``bound`` the grid was made with.

    Returns:
        Deformed positions, broadcast shape of ``verts`` and ``deform``.
    """
    if deform.shape[-1] != 3 or deform.shape[-2] != verts.shape[-2]:
        raise BadArrayShape(f"deform must be (B×)V×3 with V={verts.shape[-2]}, got {tuple(deform.shape)}.")
    if not 0.0 < max_fraction < 0.5:
        raise BadArrayShape(f"max_fraction must be in (0, 0.5), got {max_fraction}.")
    return verts + (max_fraction * cell_size(resolution, bound)) * torch.tanh(deform)


def tet_volumes(verts: torch.Tensor, tets: torch.Tensor) -> torch.Tensor:
    """Signed volumes of tetrahedra (positive = correctly oriented), differentiable.

    Args:
        verts: ``V × 3`` or ``B × V × 3`` vertex positions.
        tets: ``T × 4`` vertex indices.

    Returns:
        ``T`` or ``B × T`` volumes in cubic world units.
    """
    p = verts[..., tets, :]  # (B×)T×4×3
    edges = p[..., 1:, :] - p[..., :1, :]
    return torch.linalg.det(edges) / 6
