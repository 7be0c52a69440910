"""Tetrahedral grid: counts, bounds, orientation, conformity, deformation bounds."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from engine.geometry.errors import BadArrayShape, BadGridResolution
from engine.geometry.tetgrid import (apply_deformation, boundary_mask, cap_boundary, cell_size, grid_counts,
                                    make_tet_grid, tet_volumes)


def _signed_volumes(verts: torch.Tensor, tets: torch.Tensor) -> torch.Tensor:
    p = verts.double()[tets]
    return torch.linalg.det(p[:, 1:] - p[:, :1]) / 6


@pytest.mark.parametrize("r", [1, 2, 5, 16])
def test_counts_bounds_and_positive_orientation(r):
    verts, tets = make_tet_grid(r)
    assert verts.shape == ((r + 1) ** 3, 3) and verts.dtype == torch.float32
    assert tets.shape == (6 * r ** 3, 4) and tets.dtype == torch.int64
    assert grid_counts(r) == (verts.shape[0], tets.shape[0])
    assert verts.min() == -1 and verts.max() == 1
    vol = _signed_volumes(verts, tets)
    assert (vol > 0).all()
    assert torch.allclose(tet_volumes(verts.double(), tets), vol)
    # equal volumes that tile the cube exactly
    assert torch.allclose(vol, torch.full_like(vol, 8 / (6 * r ** 3)))
    assert abs(vol.sum().item() - 8.0) < 1e-9
    assert len(torch.unique(tets)) == verts.shape[0]


def test_vertex_index_layout():
    r = 4
    verts, _ = make_tet_grid(r)
    i, j, k = 1, 2, 3
    assert torch.allclose(verts[(i * (r + 1) + j) * (r + 1) + k], torch.tensor([-0.5, 0.0, 0.5]))


@pytest.mark.parametrize("r", [1, 3])
def test_conforming_faces(r):
    """Each interior triangle is shared by exactly two tets; boundary ones tile the cube's faces."""
    _, tets = make_tet_grid(r)
    faces = Counter()
    for t in tets.tolist():
        for drop in range(4):
            faces[tuple(sorted(t[:drop] + t[drop + 1:]))] += 1
    counts = Counter(faces.values())
    assert set(counts) <= {1, 2}
    assert counts[1] == 6 * 2 * r * r  # 6 cube faces, r*r squares, 2 triangles each


def test_deformation_is_bounded_and_differentiable():
    r = 4
    verts, _ = make_tet_grid(r)
    deform = torch.randn(2, verts.shape[0], 3, requires_grad=True) * 100
    moved = apply_deformation(verts, deform, r, max_fraction=0.45)
    assert moved.shape == (2, verts.shape[0], 3)
    assert (moved - verts).abs().max() <= 0.45 * 2 / r + 1e-6
    moved.sum().backward()
    zero = apply_deformation(verts, torch.zeros_like(verts), r)
    assert torch.equal(zero, verts)


def test_bad_inputs_raise_typed_errors():
    with pytest.raises(BadGridResolution) as e:
        make_tet_grid(0)
    assert e.value.code == "geometry.bad_resolution"
    with pytest.raises(BadGridResolution):
        make_tet_grid(2.5)
    verts, _ = make_tet_grid(2)
    with pytest.raises(BadArrayShape):
        apply_deformation(verts, torch.zeros(5, 3), 2)
    with pytest.raises(BadArrayShape):
        apply_deformation(verts, torch.zeros_like(verts), 2, max_fraction=0.7)


def test_bound_scales_the_grid_and_deformation():
    verts, tets = make_tet_grid(4, bound=1.25)
    assert verts.min() == -1.25 and verts.max() == 1.25
    assert abs(_signed_volumes(verts, tets).sum().item() - 2.5 ** 3) < 1e-9
    assert cell_size(4, 1.25) == 0.625
    moved = apply_deformation(verts, torch.full_like(verts, 50.0), 4, bound=1.25)
    assert torch.allclose(moved - verts, torch.full_like(verts, 0.45 * 0.625))
    with pytest.raises(BadGridResolution):
        make_tet_grid(4, bound=0.0)


def test_boundary_mask_and_cap():
    r = 5
    verts, _ = make_tet_grid(r)
    mask = boundary_mask(r)
    assert mask.sum() == (r + 1) ** 3 - (r - 1) ** 3
    assert torch.equal(mask, (verts.abs() == 1).any(dim=1))
    sdf = torch.full((2, len(verts)), -0.5, requires_grad=True)
    capped = cap_boundary(sdf, r, eps=1e-3)
    assert (capped[:, mask] == 1e-3).all() and (capped[:, ~mask] == -0.5).all()
    capped.sum().backward()
    assert (sdf.grad[:, ~mask] == 1).all() and (sdf.grad[:, mask] == 0).all()
    with pytest.raises(BadArrayShape):
        cap_boundary(torch.zeros(7), r)


def test_small_deformations_keep_orientation_and_large_ones_can_invert():
    r = 3
    verts, tets = make_tet_grid(r)
    gen = torch.Generator().manual_seed(0)
    # below 1/6 of a cell per coordinate no tet can invert
    small = apply_deformation(verts, torch.randn(4, len(verts), 3, generator=gen) * 10, r, max_fraction=0.16)
    assert (tet_volumes(small, tets) > 0).all()
    # worst case at the DMTet bound: the most inverting corner of each vertex's offset box
    import itertools

    signs = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=3)), dtype=torch.float64)
    combos = torch.tensor(list(itertools.product(range(8), repeat=4)))
    corners = verts.double()[tets[0]]  # 4×3
    moved = corners[None] + 0.45 * (2 / r) * signs[combos]  # 4096×4×3
    assert (tet_volumes(moved.reshape(-1, 3), torch.arange(len(moved) * 4).reshape(-1, 4)) < 0).any()
