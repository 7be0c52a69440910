"""mesh_sdf / mesh_occupancy / winding_number: accuracy, robust sign on open meshes, typed errors."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from engine.errors import InvalidMesh
from engine.geometry.errors import BadArrayShape, BadFaceIndex, EmptyMesh, NonFiniteGeometry
from engine.geometry.sdf import mesh_occupancy, mesh_sdf, winding_number


@pytest.fixture(scope="module")
def sphere():
    return trimesh.creation.icosphere(subdivisions=4, radius=0.7)  # 5120 faces


def _points(n=4000, seed=0):
    return np.random.default_rng(seed).uniform(-1.2, 1.2, (n, 3))


def test_sphere_sdf_matches_analytic(sphere):
    p = _points()
    s = mesh_sdf(sphere.vertices, sphere.faces, p)
    assert s.dtype == np.float32 and s.shape == (len(p),)
    exact = np.linalg.norm(p, axis=1) - 0.7
    # icosphere facets sit at most ~1e-3 inside the true sphere of radius 0.7
    assert np.abs(s - exact).max() < 3e-3
    assert ((s < 0) == (exact < 0))[np.abs(exact) > 3e-3].all()


def test_unsigned_distance_agrees_with_trimesh(meshes_dir):
    mesh = trimesh.load(meshes_dir / "featuretype.STL", force="mesh")
    p = mesh.bounds[0] + np.random.default_rng(1).random((300, 3)) * mesh.extents
    ours = np.abs(mesh_sdf(mesh.vertices, mesh.faces, p))
    _, ref, _ = trimesh.proximity.closest_point(mesh, p)
    assert np.allclose(ours, ref, rtol=1e-4, atol=1e-4 * mesh.scale)


def test_sign_agrees_with_trimesh_contains_on_closed_mesh(meshes_dir):
    mesh = trimesh.load(meshes_dir / "torus.STL", force="mesh")
    assert mesh.is_watertight
    p = mesh.bounds[0] + np.random.default_rng(2).random((3000, 3)) * mesh.extents
    occ = mesh_occupancy(mesh.vertices, mesh.faces, p)
    assert occ.dtype == bool
    ref = mesh.contains(p)
    assert (occ == ref).mean() > 0.998
    assert 0.05 < occ.mean() < 0.95


def test_open_mesh_keeps_a_robust_sign(sphere):
    """Punch holes in the sphere: winding numbers still separate inside from outside."""
    rng = np.random.default_rng(3)
    keep = rng.random(len(sphere.faces)) > 0.05  # remove 5% of the faces at random
    faces = sphere.faces[keep]
    assert not trimesh.Trimesh(sphere.vertices, faces, process=False).is_watertight
    d = rng.normal(size=(2000, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    inner, outer = d * rng.uniform(0.0, 0.5, (2000, 1)), d * rng.uniform(0.9, 1.2, (2000, 1))
    s_in = mesh_sdf(sphere.vertices, faces, inner)
    s_out = mesh_sdf(sphere.vertices, faces, outer)
    assert (s_in < 0).all() and (s_out > 0).all()


def test_fast_winding_number_matches_exact(meshes_dir):
    mesh = trimesh.load(meshes_dir / "rabbit.obj", force="mesh")  # open, several pieces
    p = mesh.bounds[0] + np.random.default_rng(4).random((500, 3)) * mesh.extents
    fast = winding_number(mesh.vertices, mesh.faces, p)
    exact = winding_number(mesh.vertices, mesh.faces, p, exact=True)
    assert np.abs(fast - exact).max() < 0.02
    # the sign may only differ from the exact one where the winding number is ambiguous
    differs = (mesh_sdf(mesh.vertices, mesh.faces, p) < 0) != (exact > 0.5)
    assert (np.abs(exact[differs] - 0.5) < 0.02).all()


def test_messy_meshes_do_not_crash(meshes_dir):
    for name in ("soup.stl", "wallhole.obj", "tube.obj", "multibody.stl"):
        mesh = trimesh.load(meshes_dir / name, force="mesh")
        p = mesh.bounds[0] + np.random.default_rng(5).random((200, 3)) * mesh.extents
        s = mesh_sdf(mesh.vertices, mesh.faces, p)
        assert np.isfinite(s).all()


def test_accepts_torch_and_empty_queries(sphere):
    import torch

    s = mesh_sdf(torch.tensor(sphere.vertices), torch.tensor(sphere.faces), torch.zeros(1, 3))
    assert s[0] < 0
    assert mesh_sdf(sphere.vertices, sphere.faces, np.zeros((0, 3))).shape == (0,)


def test_bad_input_raises_typed_errors(sphere):
    p = np.zeros((3, 3))
    with pytest.raises(EmptyMesh) as e:
        mesh_sdf(np.zeros((0, 3)), np.zeros((0, 3), dtype=int), p)
    assert e.value.code == "mesh.empty" and isinstance(e.value, InvalidMesh) and e.value.advice
    v = sphere.vertices.copy()
    v[3] = np.nan
    with pytest.raises(NonFiniteGeometry):
        mesh_sdf(v, sphere.faces, p)
    with pytest.raises(NonFiniteGeometry):
        mesh_sdf(sphere.vertices, sphere.faces, np.array([[0.0, np.inf, 0.0]]))
    with pytest.raises(BadFaceIndex):
        mesh_sdf(sphere.vertices, sphere.faces + len(sphere.vertices), p)
    with pytest.raises(BadArrayShape):
        mesh_sdf(sphere.vertices[:, :2], sphere.faces, p)
    with pytest.raises(BadArrayShape):
        mesh_occupancy(sphere.vertices, sphere.faces, np.zeros((3, 2)))
