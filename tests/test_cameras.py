"""Spherical cameras, look_at, Blender/OpenCV conversions, projection; checked against Blender itself."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.render.cameras import (blender_to_c2w, c2w_to_blender, c2w_to_opencv, c2w_to_spherical,
                                   fit_radius, fov_to_blender_lens, intrinsics, look_at, orbit_cameras,
                                   projection_matrix, relative_pose, spherical_to_c2w)
from engine.render.errors import InvalidCamera
from engine.render.shading import camera_rays


def test_front_camera_looks_at_origin_from_minus_y():
    m = spherical_to_c2w(math.pi / 2, 0.0, 3.0)
    assert m.shape == (4, 4) and m.dtype == np.float32
    assert np.allclose(m[:3, 3], [0, -3, 0], atol=1e-6)
    assert np.allclose(-m[:3, 2], [0, 1, 0], atol=1e-6)  # view direction (local -Z) toward +Y
    assert np.allclose(m[:3, 1], [0, 0, 1], atol=1e-6)  # image up is world up
    assert np.allclose(m[:3, 0], [1, 0, 0], atol=1e-6)  # +X on the right, as Blender's front view
    # Blender: a camera at (0, -3, 0) with rotation_euler (90°, 0, 0) is this camera
    rx = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]])
    assert np.allclose(m[:3, :3], rx, atol=1e-6)


def test_azimuth_turns_toward_plus_x_and_polar_from_plus_z():
    assert np.allclose(spherical_to_c2w(math.pi / 2, math.pi / 2, 2)[:3, 3], [2, 0, 0], atol=1e-6)
    assert np.allclose(spherical_to_c2w(math.pi / 2, math.pi, 2)[:3, 3], [0, 2, 0], atol=1e-6)
    assert np.allclose(spherical_to_c2w(0.0, 0.3, 2)[:3, 3], [0, 0, 2], atol=1e-6)
    top = spherical_to_c2w(0.0, 0.0, 2)
    assert np.allclose(-top[:3, 2], [0, 0, -1], atol=1e-6) and np.allclose(top[:3, 1], [0, 1, 0], atol=1e-6)


def test_spherical_roundtrip_and_look_at_agree():
    rng = np.random.default_rng(0)
    polar, az, r = rng.uniform(0.1, 3.0, 50), rng.uniform(-3.1, 3.1, 50), rng.uniform(0.5, 5, 50)
    m = spherical_to_c2w(polar, az, r)
    assert m.shape == (50, 4, 4)
    rot = m[:, :3, :3].astype(np.float64)
    assert np.allclose(np.swapaxes(rot, 1, 2) @ rot, np.eye(3), atol=1e-5)
    assert np.allclose(np.linalg.det(rot), 1, atol=1e-5)
    p2, a2, r2 = c2w_to_spherical(m)
    assert np.allclose(p2, polar, atol=1e-5) and np.allclose(a2, az, atol=1e-5) and np.allclose(r2, r, atol=1e-5)
    assert np.allclose(look_at(m[:, :3, 3]), m, atol=1e-5)
    # the view axis passes through the origin
    assert np.allclose(np.cross(m[:, :3, 2], m[:, :3, 3]), 0, atol=1e-5)


def test_look_at_straight_down_uses_fallback_up():
    m = look_at([0, 0, 4])
    assert np.allclose(-m[:3, 2], [0, 0, -1]) and np.allclose(m[:3, 1], [0, 1, 0])
    with pytest.raises(InvalidCamera):
        look_at([0, 0, 0])


def test_blender_and_opencv_conversions_roundtrip():
    m = spherical_to_c2w(1.1, 0.4, 2.5)
    b = c2w_to_blender(m)
    assert np.allclose(b, m)
    scaled = b.copy()
    scaled[:3, :3] *= 2.0  # a Blender object scale must not leak into our c2w
    assert np.allclose(blender_to_c2w(scaled), m, atol=1e-6)
    cv = c2w_to_opencv(m)
    assert np.allclose(cv[:3, 2], -m[:3, 2]) and np.allclose(cv[:3, 1], -m[:3, 1])
    assert np.allclose(c2w_to_opencv(cv), m)
    with pytest.raises(InvalidCamera):
        c2w_to_blender(np.diag([1.0, 1.0, -1.0, 1.0]))  # a reflection, not a rotation
    with pytest.raises(InvalidCamera):
        spherical_to_c2w(1.0, 0.0, 0.0)
    with pytest.raises(InvalidCamera):
        spherical_to_c2w(float("nan"), 0.0, 1.0)


def test_projection_matches_pixel_rays_and_image_axes():
    size, fov = 64, 40.0
    m = spherical_to_c2w(math.pi / 2, 0.0, 4.0)
    k = intrinsics(fov, size)
    cv = c2w_to_opencv(m).astype(np.float64)
    w2c = np.linalg.inv(cv)

    def project(p):
        q = w2c[:3, :3] @ p + w2c[:3, 3]
        uv = k @ q
        return uv[:2] / uv[2]

    # world +X is on the right of the front view, +Z at the top
    assert project(np.array([0.5, 0, 0]))[0] > size / 2
    assert project(np.array([0, 0, 0.5]))[1] < size / 2
    # the ray of pixel (row 10, col 50) projects back to that pixel's centre
    origins, dirs = camera_rays(m[None], size, fov)
    p = origins[0, 10, 50] + 3.0 * dirs[0, 10, 50]
    assert np.allclose(project(p), [50.5, 10.5], atol=1e-4)


def test_orbit_and_fit_radius_keep_the_cube_in_view():
    cams = orbit_cameras(6, polar=math.radians(70), fov_deg=40)
    assert cams.shape == (6, 4, 4)
    _, az, r = c2w_to_spherical(cams)
    assert np.allclose(np.diff(np.unwrap(az)), 2 * math.pi / 6, atol=1e-5)
    assert np.allclose(r, fit_radius(40))
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=float)
    half = math.tan(math.radians(20))
    for m in cams.astype(np.float64):
        local = (np.linalg.inv(m) @ np.c_[corners, np.ones(8)].T).T[:, :3]
        assert (np.abs(local[:, :2] / -local[:, 2:3]) < half).all()
    with pytest.raises(InvalidCamera):
        orbit_cameras(0)


def test_projection_matrix_maps_clip_planes():
    p = projection_matrix(40.0, [0.5, 1.0], [10.0, 4.0]).astype(np.float64)
    assert p.shape == (2, 4, 4)
    for m, near, far in zip(p, (0.5, 1.0), (10.0, 4.0)):
        for z, ndc in ((-near, -1.0), (-far, 1.0)):
            c = m @ np.array([0.0, 0.0, z, 1.0])
            assert math.isclose(c[2] / c[3], ndc, abs_tol=1e-5)
    with pytest.raises(InvalidCamera):
        projection_matrix(40.0, 1.0, 0.5)


def test_relative_pose_zero123():
    d = relative_pose((1.0, 0.5, 2.0), (1.2, 0.5 + math.pi / 2, 2.5))
    assert np.allclose(d, [0.2, 1.0, 0.0, 0.5], atol=1e-6)


def test_against_blender():
    """Blender's own camera math: Euler/Track-To orientation and world_to_camera_view projection."""
    bpy = pytest.importorskip("bpy")
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Matrix, Vector

    scene = bpy.context.scene
    scene.render.resolution_x = scene.render.resolution_y = 128
    scene.render.resolution_percentage = 100
    data = bpy.data.cameras.new("lf_test_cam")
    data.sensor_fit = "AUTO"
    data.lens = fov_to_blender_lens(35.0, data.sensor_width)
    cam = bpy.data.objects.new("lf_test_cam", data)
    scene.collection.objects.link(cam)
    try:
        assert math.isclose(data.angle, math.radians(35.0), rel_tol=1e-6)
        rng = np.random.default_rng(0)
        for polar, az, r in zip(rng.uniform(0.2, 2.9, 5), rng.uniform(-3, 3, 5), rng.uniform(2, 5, 5)):
            ours = spherical_to_c2w(polar, az, r)
            # Track To (-Z toward target, +Y up) is how a Blender user aims a camera at the origin
            pos = Vector(ours[:3, 3].tolist())
            quat = (-pos).to_track_quat("-Z", "Y")
            assert np.allclose(np.array(quat.to_matrix()), ours[:3, :3], atol=1e-5)
            cam.matrix_world = Matrix(c2w_to_blender(ours).tolist())
            bpy.context.view_layer.update()
            assert np.allclose(np.array(cam.matrix_world), ours, atol=1e-5)
            assert np.allclose(blender_to_c2w(np.array(cam.matrix_world)), ours, atol=1e-5)
            # project points with Blender and with our rays/intrinsics
            k = intrinsics(35.0, 128)
            w2c = np.linalg.inv(c2w_to_opencv(ours).astype(np.float64))
            for p in rng.uniform(-0.8, 0.8, (4, 3)):
                ndc = world_to_camera_view(scene, cam, Vector(p.tolist()))
                q = w2c[:3, :3] @ p + w2c[:3, 3]
                uv = (k @ q)[:2] / q[2]
                assert np.allclose(uv, [ndc.x * 128, (1 - ndc.y) * 128], atol=1e-3)
                assert math.isclose(ndc.z, q[2], rel_tol=1e-5)
    finally:
        bpy.data.objects.remove(cam)
        bpy.data.cameras.remove(data)
