"""sample_surface (uniform by area, normals, determinism) and the LION normalizations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from engine.geometry.errors import BadArrayShape, EmptyMesh, NonFiniteGeometry
from engine.geometry.normalize import denormalize, global_stats, normalize_box, normalize_global
from engine.geometry.sampling import sample_surface


def test_points_on_sphere_with_outward_unit_normals():
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    pts, nrm = sample_surface(mesh.vertices, mesh.faces, 2048, seed=0)
    assert pts.shape == (2048, 3) and nrm.shape == (2048, 3)
    assert pts.dtype == np.float32 and nrm.dtype == np.float32
    r = np.linalg.norm(pts, axis=1)
    assert r.max() <= 0.5 + 1e-5 and r.min() > 0.49
    assert np.allclose(np.linalg.norm(nrm, axis=1), 1, atol=1e-5)
    assert ((nrm * pts).sum(1) > 0).all()


def test_deterministic_per_seed():
    mesh = trimesh.creation.box()
    a = sample_surface(mesh.vertices, mesh.faces, 500, seed=7)
    b = sample_surface(mesh.vertices, mesh.faces, 500, seed=7)
    c = sample_surface(mesh.vertices, mesh.faces, 500, seed=8)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_uniform_by_area():
    # two triangles with areas 1:3, both in z=0, far apart in x
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 2, 0], [10, 0, 0], [13, 0, 0], [10, 2, 0]], dtype=float)
    f = np.array([[0, 1, 2], [3, 4, 5]])
    pts, nrm = sample_surface(v, f, 20000, seed=0)
    frac_big = (pts[:, 0] > 5).mean()
    assert abs(frac_big - 0.75) < 0.015
    assert np.allclose(nrm, [0, 0, 1])
    # uniform inside a triangle: the centroid of the samples is the triangle's centroid
    small = pts[pts[:, 0] < 5]
    assert np.allclose(small.mean(0), v[:3].mean(0), atol=0.02)


def test_zero_area_and_bad_meshes_raise():
    v = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0]], dtype=float)
    with pytest.raises(EmptyMesh):
        sample_surface(v, np.array([[0, 1, 2]]), 10)
    with pytest.raises(EmptyMesh):
        sample_surface(np.zeros((0, 3)), np.zeros((0, 3), dtype=int), 10)
    with pytest.raises(NonFiniteGeometry):
        sample_surface(np.array([[0, 0, 0], [1, 0, 0], [0, np.nan, 0]]), np.array([[0, 1, 2]]), 10)
    box = trimesh.creation.box()
    with pytest.raises(BadArrayShape):
        sample_surface(box.vertices, box.faces, -1)
    pts, nrm = sample_surface(box.vertices, box.faces, 0)
    assert pts.shape == (0, 3) and nrm.shape == (0, 3)


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_normalize_box_fits_cube_and_inverts(lib):
    rng = np.random.default_rng(0)
    x = rng.random((4, 256, 3)) * np.array([1.0, 2.0, 3.0]) + 5.0
    if lib == "torch":
        x = torch.from_numpy(x)
    n, center, scale = normalize_box(x)
    assert type(n) is type(x) and n.shape == x.shape
    assert tuple(center.shape) == (4, 1, 3) and tuple(scale.shape) == (4, 1, 1)
    n_np = np.asarray(n)
    assert np.allclose(n_np.max(axis=(1, 2)), 1) and np.allclose(n_np.min(axis=(1, 2)), -1)
    # longest axis (z) spans exactly [-1, 1]; the others are centred
    assert np.allclose(n_np[..., 2].max(1), 1) and np.allclose(n_np[..., 2].min(1), -1)
    assert np.allclose(n_np.max(1) + n_np.min(1), 0)
    assert np.allclose(np.asarray(denormalize(n, center, scale)), np.asarray(x))
    single, c1, s1 = normalize_box(x[0])
    assert tuple(c1.shape) == (1, 3) and np.allclose(np.asarray(single), n_np[0])


def test_normalize_global_lion_statistics():
    rng = np.random.default_rng(1)
    train = rng.normal(size=(8, 512, 3)) * 0.3 + np.array([0.1, -0.2, 0.5])
    mean, std = global_stats(train)
    assert mean.shape == (1, 1, 3) and std.shape == (1, 1, 1)
    assert np.allclose(mean[0, 0], train.reshape(-1, 3).mean(0))
    assert np.isclose(std.item(), train.reshape(-1).std())
    n, m2, s2 = normalize_global(train)
    assert np.allclose(m2, mean) and np.allclose(s2, std)
    assert np.allclose(n.reshape(-1, 3).mean(0), 0, atol=1e-9)
    # reuse training statistics on other data; inverse restores it
    test = rng.normal(size=(2, 100, 3))
    nt, _, _ = normalize_global(test, mean, std)
    assert np.allclose(denormalize(nt, mean, std), test)
    n_axis, _, s_axis = normalize_global(train, per_axis=True)
    assert s_axis.shape == (1, 1, 3) and np.allclose(n_axis.reshape(-1, 3).std(0), 1)
    nt1, _, _ = normalize_global(test[0], mean, std)
    assert nt1.shape == (100, 3) and np.allclose(denormalize(nt1, mean, std), test[0])
    tt, tm, ts = normalize_global(torch.from_numpy(train))
    assert torch.allclose(tt, torch.from_numpy(n))


def test_normalize_bad_shapes():
    with pytest.raises(BadArrayShape):
        normalize_box(np.zeros((10, 2)))
    with pytest.raises(EmptyMesh):
        normalize_box(np.zeros((0, 3)))
