"""render_mesh: geometry of the outputs (mask, depth, normals), image axes, lighting, backends."""

from __future__ import annotations

import math

import numpy as np
import pytest
import trimesh

from engine.geometry.errors import EmptyMesh
from engine.render.cameras import orbit_cameras, spherical_to_c2w
from engine.render.errors import InvalidCamera, InvalidRenderSettings, RenderBackendUnavailable
from engine.render.renderer import render_mesh
from engine.render.shading import camera_rays

SIZE, FOV, DIST, RADIUS = 128, 40.0, 3.0, 0.5


@pytest.fixture(scope="module")
def sphere():
    return trimesh.creation.icosphere(subdivisions=4, radius=RADIUS)


@pytest.fixture(scope="module")
def sphere_views(sphere):
    cams = spherical_to_c2w([math.pi / 2, math.pi / 2, 0.4], [0.0, math.pi / 2, 2.0], [DIST, DIST, DIST])
    return cams, render_mesh(sphere.vertices, sphere.faces, cams, size=SIZE, fov_deg=FOV, backend="cpu")


def test_output_shapes_and_types(sphere_views):
    _, out = sphere_views
    assert out["rgb"].shape == (3, SIZE, SIZE, 3) and out["rgb"].dtype == np.uint8
    assert out["depth"].shape == (3, SIZE, SIZE) and out["depth"].dtype == np.float32
    assert out["normals"].shape == (3, SIZE, SIZE, 3) and out["normals"].dtype == np.float32
    assert out["mask"].shape == (3, SIZE, SIZE) and out["mask"].dtype == bool
    m = out["mask"]
    assert (out["rgb"][~m] == 255).all() and (out["depth"][~m] == 0).all() and (out["normals"][~m] == 0).all()
    assert (out["depth"][m] > 0).all()
    assert np.allclose(np.linalg.norm(out["normals"][m], axis=-1), 1, atol=1e-5)


def test_silhouette_area_matches_projection(sphere_views):
    _, out = sphere_views
    f = 0.5 * SIZE / math.tan(math.radians(FOV) / 2)
    r_px = f * math.tan(math.asin(RADIUS / DIST))
    expected = math.pi * r_px ** 2
    for m in out["mask"]:
        assert abs(m.sum() - expected) / expected < 0.03
        rows, cols = np.nonzero(m)  # centred in the image
        assert abs(rows.mean() + 0.5 - SIZE / 2) < 0.5 and abs(cols.mean() + 0.5 - SIZE / 2) < 0.5


def test_depth_unprojects_onto_the_surface(sphere_views):
    cams, out = sphere_views
    origins, dirs = camera_rays(cams, SIZE, FOV)
    forward = -cams[:, None, None, :3, 2]
    t = out["depth"] / (dirs * forward).sum(-1)
    pts = origins + t[..., None] * dirs
    r = np.linalg.norm(pts[out["mask"]], axis=-1)
    assert np.abs(r - RADIUS).max() < 2e-3  # icosphere facets are within ~1e-3 of the sphere
    c = SIZE // 2
    assert abs(out["depth"][0, c, c] - (DIST - RADIUS)) < 5e-3


def test_normals_are_world_space(sphere_views):
    _, out = sphere_views
    c = SIZE // 2
    assert np.allclose(out["normals"][0, c, c], [0, -1, 0], atol=0.05)  # front view sees the -Y side
    assert np.allclose(out["normals"][1, c, c], [1, 0, 0], atol=0.05)  # azimuth 90° sees +X


def test_image_axes_follow_blender_semantics():
    """Front view: +X on the right, +Z on top; seen from the back, +X is on the left."""
    right = trimesh.creation.box(extents=[0.3, 0.3, 0.3])
    right.apply_translation([0.7, 0, 0])
    top = trimesh.creation.box(extents=[0.2, 0.2, 0.2])
    top.apply_translation([0, 0, 0.7])
    cams = spherical_to_c2w([math.pi / 2, math.pi / 2], [0.0, math.pi], [4.0, 4.0])
    for mesh, axis, sides in ((right, 1, (">", "<")), (top, 0, ("<", "<"))):
        out = render_mesh(mesh.vertices, mesh.faces, cams, size=64, backend="cpu")
        for m, side in zip(out["mask"], sides):
            centre = np.nonzero(m)[axis].mean() + 0.5
            assert (centre > 32) if side == ">" else (centre < 32)


def test_fixed_world_light_and_two_sided_faces():
    quad = trimesh.Trimesh([[-0.5, 0, -0.5], [0.5, 0, -0.5], [0.5, 0, 0.5], [-0.5, 0, 0.5]],
                           [[0, 1, 2], [0, 2, 3]], process=False)  # normal -Y (toward the front)
    cams = spherical_to_c2w([math.pi / 2, math.pi / 2 - 0.3, math.pi / 2], [0.0, 0.3, math.pi], [3.0, 3.0, 3.0])
    out = render_mesh(quad.vertices, quad.faces, cams, size=32, backend="cpu")
    assert out["mask"].all(axis=0)[16, 16]
    # the same face seen from two front directions has the same colour (lights fixed in the world)
    assert np.array_equal(out["rgb"][0, 16, 16], out["rgb"][1, 16, 16])
    # seen from behind, the open quad is still shaded, with its normal flipped toward the camera
    assert np.allclose(out["normals"][2, 16, 16], [0, 1, 0])
    assert not np.array_equal(out["rgb"][2, 16, 16], out["rgb"][0, 16, 16])


def test_supersampling_antialiases_and_keeps_geometry(sphere, sphere_views):
    cams, plain = sphere_views
    out = render_mesh(sphere.vertices, sphere.faces, cams[:1], size=SIZE, fov_deg=FOV, backend="cpu", supersample=3)
    assert out["rgb"].shape == (1, SIZE, SIZE, 3) and out["alpha"].dtype == np.float32
    assert np.array_equal(plain["alpha"], plain["mask"].astype(np.float32))
    edge = (out["alpha"] > 0) & (out["alpha"] < 1)
    assert edge.sum() > 50  # partial coverage along the silhouette
    # edge pixels blend surface and white background
    assert (out["rgb"][edge].astype(int).sum(-1) > plain["rgb"][0][plain["mask"][0]].astype(int).sum(-1).min()).all()
    area = math.pi * (0.5 * SIZE / math.tan(math.radians(FOV) / 2) * math.tan(math.asin(RADIUS / DIST))) ** 2
    assert abs(out["alpha"].sum() - area) / area < 0.01  # coverage integrates the true disc
    m = (out["alpha"][0] == 1) & plain["mask"][0]
    err = np.abs(out["depth"][0][m] - plain["depth"][0][m])
    assert np.median(err) < 1e-3 and err.max() < 0.05  # larger only at grazing angles near the rim
    assert np.allclose(np.linalg.norm(out["normals"][0][out["mask"][0]], axis=-1), 1, atol=1e-5)
    with pytest.raises(InvalidRenderSettings):
        render_mesh(sphere.vertices, sphere.faces, cams[:1], supersample=8)


def test_batch_equals_single_renders(sphere, monkeypatch):
    from engine.render import renderer

    cams = orbit_cameras(3, radius=3.0)
    batch = render_mesh(sphere.vertices, sphere.faces, cams, size=48, backend="cpu")
    for i in range(3):
        one = render_mesh(sphere.vertices, sphere.faces, cams[i], size=48, backend="cpu")
        for key in batch:
            assert np.array_equal(batch[key][i], one[key][0])
    monkeypatch.setattr(renderer, "_RAYS_PER_CALL", 2 * 48 * 48)  # two cameras per backend call
    chunked = render_mesh(sphere.vertices, sphere.faces, cams, size=48, backend="cpu")
    for key in batch:
        assert np.array_equal(batch[key], chunked[key])


def test_bad_settings_raise_typed_errors(sphere):
    cam = spherical_to_c2w(1.0, 0.0, 3.0)
    with pytest.raises(InvalidRenderSettings):
        render_mesh(sphere.vertices, sphere.faces, cam, backend="opengl")
    with pytest.raises(InvalidRenderSettings):
        render_mesh(sphere.vertices, sphere.faces, cam, size=4)
    with pytest.raises(InvalidRenderSettings):
        render_mesh(sphere.vertices, sphere.faces, cam, fov_deg=180)
    with pytest.raises(InvalidCamera):
        render_mesh(sphere.vertices, sphere.faces, np.eye(3))
    with pytest.raises(EmptyMesh):
        render_mesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=int), cam)


def test_cuda_backend_refused_without_cuda(sphere):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is present here")
    with pytest.raises(RenderBackendUnavailable) as e:
        render_mesh(sphere.vertices, sphere.faces, spherical_to_c2w(1.0, 0.0, 3.0), backend="cuda")
    assert e.value.code == "render.backend_unavailable"
    out = render_mesh(sphere.vertices, sphere.faces, spherical_to_c2w(1.0, 0.0, 3.0), size=16, backend="auto")
    assert out["mask"].any()


@pytest.mark.cuda
def test_cpu_and_cuda_backends_agree(meshes_dir):
    mesh = trimesh.load(meshes_dir / "featuretype.STL", force="mesh")
    mesh.apply_translation(-mesh.bounds.mean(0))
    mesh.apply_scale(2.0 / mesh.extents.max())
    cams = orbit_cameras(6, polar=math.radians(60), radius=3.5)
    cpu = render_mesh(mesh.vertices, mesh.faces, cams, size=256, backend="cpu")
    gpu = render_mesh(mesh.vertices, mesh.faces, cams, size=256, backend="cuda")
    for key in cpu:
        assert cpu[key].shape == gpu[key].shape and cpu[key].dtype == gpu[key].dtype
    both = cpu["mask"] & gpu["mask"]
    iou = both.sum() / (cpu["mask"] | gpu["mask"]).sum()
    assert iou > 0.98, iou
    depth_err = np.abs(cpu["depth"][both] - gpu["depth"][both])
    assert np.median(depth_err) < 1e-3 and np.mean(depth_err < 1e-2) > 0.98
    assert np.mean(np.abs(cpu["rgb"][both].astype(int) - gpu["rgb"][both]) <= 2) > 0.97


def test_nvdiffrast_plugin_is_registered_when_torch_loads_it(monkeypatch):
    """nvdiffrast 0.3.3 re-imports its torch extension by name; with pybind11 3 (torch 2.11)
    torch's loader no longer registers it in sys.modules, and our shim must (checked on CPU
    with stand-ins for nvdiffrast's loader and torch's)."""
    import importlib
    import sys
    import types

    import torch.utils.cpp_extension as cpp_extension

    from engine.render import backend_cuda

    name = "lf_fake_nvdiffrast_plugin"
    monkeypatch.delitem(sys.modules, name, raising=False)
    calls = []

    def torch_loader(module_name, path, is_python_module):  # like torch's: loads, registers nothing
        calls.append(module_name)
        return types.ModuleType(module_name)

    def get_plugin(gl=False):  # like nvdiffrast.torch.ops._get_plugin
        cpp_extension._import_module_from_library(name, "/nowhere", True)
        ops._cached_plugin[gl] = importlib.import_module(name)
        return ops._cached_plugin[gl]

    ops = types.SimpleNamespace(_cached_plugin={}, _get_plugin=get_plugin)
    package = types.ModuleType("nvdiffrast")
    package.torch = types.ModuleType("nvdiffrast.torch")
    package.torch.ops = ops
    monkeypatch.setitem(sys.modules, "nvdiffrast", package)
    monkeypatch.setitem(sys.modules, "nvdiffrast.torch", package.torch)
    monkeypatch.setitem(sys.modules, "nvdiffrast.torch.ops", ops)
    monkeypatch.setattr(cpp_extension, "_import_module_from_library", torch_loader)
    with pytest.raises(ModuleNotFoundError):
        get_plugin()  # what nvdiffrast alone does under pybind11 3
    backend_cuda._load_plugin()
    assert ops._cached_plugin[False] is sys.modules[name] and calls == [name, name]
    assert cpp_extension._import_module_from_library is torch_loader  # restored
    backend_cuda._load_plugin()  # loaded once only
    assert calls == [name, name]

    def broken(gl=False):
        raise RuntimeError("Error building extension 'nvdiffrast_plugin'")

    ops._cached_plugin.clear()
    ops._get_plugin = broken
    with pytest.raises(RenderBackendUnavailable) as e:
        backend_cuda._load_plugin()
    assert "Error building extension" in e.value.details["error"]
    monkeypatch.delitem(sys.modules, name, raising=False)


def test_cuda_backend_clip_space_matches_pixel_convention(sphere):
    """The nvdiffrast path's projection, checked on CPU: NDC of a pixel's ray is that pixel."""
    import torch

    from engine.render.backend_cuda import clip_positions

    cams = spherical_to_c2w([1.0, 2.0], [0.3, -2.0], [3.0, 2.5])
    origins, dirs = camera_rays(cams, 32, FOV)
    rows, cols = np.array([3, 20, 31]), np.array([5, 16, 0])
    pts = origins[:, rows, cols] + 2.0 * dirs[:, rows, cols]  # B×3×3, in front of each camera
    v = torch.tensor(np.concatenate([sphere.vertices, pts.reshape(-1, 3)]), dtype=torch.float32)
    clip = clip_positions(v, torch.tensor(cams), FOV).double().numpy()
    ndc = clip[..., :3] / clip[..., 3:]
    n_sphere = len(sphere.vertices)
    for b in range(2):
        got = ndc[b, n_sphere + 3 * b: n_sphere + 3 * b + 3]
        assert np.allclose(got[:, 0], (cols + 0.5) / 32 * 2 - 1, atol=1e-4)
        assert np.allclose(got[:, 1], 1 - (rows + 0.5) / 32 * 2, atol=1e-4)
        # the whole mesh lies between the near and far planes
        assert (np.abs(ndc[b, :n_sphere, 2]) < 1).all()


def test_mask_matches_blender_cycles(tmp_path):
    """End to end against Blender: our camera → Blender camera, Cycles alpha == our mask."""
    bpy = pytest.importorskip("bpy")
    from mathutils import Matrix

    from engine.render.cameras import c2w_to_blender, fov_to_blender_lens

    box = trimesh.creation.box(extents=[0.6, 0.3, 0.3])
    box.apply_translation([0.5, 0.0, 0.2])
    ball = trimesh.creation.icosphere(2, radius=0.3)
    ball.apply_translation([-0.3, -0.2, -0.3])
    mesh = trimesh.util.concatenate([box, ball])  # asymmetric: a flipped image cannot match
    size = 64
    scene = bpy.data.scenes.new("lf_render_test")
    me = bpy.data.meshes.new("lf_render_test")
    me.from_pydata(mesh.vertices.tolist(), [], mesh.faces.tolist())
    me.update()
    obj = bpy.data.objects.new("lf_render_test", me)
    cam_data = bpy.data.cameras.new("lf_render_test")
    cam_data.sensor_fit = "AUTO"
    cam_data.lens = fov_to_blender_lens(FOV, cam_data.sensor_width)
    cam = bpy.data.objects.new("lf_render_test_cam", cam_data)
    try:
        scene.collection.objects.link(obj)
        scene.collection.objects.link(cam)
        scene.camera = cam
        scene.render.engine = "CYCLES"
        scene.cycles.samples = 1
        scene.cycles.device = "CPU"
        scene.cycles.pixel_filter_type = "BOX"
        scene.cycles.filter_width = 0.01  # one sample at the pixel centre, like our rays
        scene.render.film_transparent = True
        scene.render.resolution_x = scene.render.resolution_y = size
        scene.render.resolution_percentage = 100
        scene.render.image_settings.file_format = "PNG"
        scene.render.image_settings.color_mode = "RGBA"
        for polar, azimuth in ((1.1, 0.7), (math.pi / 2, 0.0), (2.0, -2.2)):
            c2w = spherical_to_c2w(polar, azimuth, 3.0)
            cam.matrix_world = Matrix(c2w_to_blender(c2w).tolist())
            scene.render.filepath = str(tmp_path / f"view_{azimuth}.png")
            bpy.ops.render.render(write_still=True, scene=scene.name)
            img = bpy.data.images.load(scene.render.filepath)
            alpha = np.array(img.pixels[:]).reshape(size, size, 4)[::-1, :, 3] > 0.5  # Blender rows start at the bottom
            bpy.data.images.remove(img)
            ours = render_mesh(mesh.vertices, mesh.faces, c2w, size=size, fov_deg=FOV, backend="cpu")["mask"][0]
            iou = (alpha & ours).sum() / (alpha | ours).sum()
            assert iou > 0.98, (polar, azimuth, iou)
    finally:
        bpy.data.objects.remove(obj)
        bpy.data.objects.remove(cam)
        bpy.data.meshes.remove(me)
        bpy.data.cameras.remove(cam_data)
        bpy.data.scenes.remove(scene)
