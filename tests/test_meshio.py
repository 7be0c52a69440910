"""User meshes: real messy files load or are skipped with a typed reason; folder layouts; Y-up."""

from __future__ import annotations

import shutil
import struct
import time

import numpy as np
import pytest
import trimesh

from engine.data.errors import EmptyMesh, MeshTooLarge, MeshUnreadable, NonFiniteMesh
from engine.data.meshio import (Y_UP_TO_Z_UP, detect_layout, iter_mesh_folder, load_mesh, peek_face_count,
                                scan_folder)
from engine.errors import InvalidMesh

# files of tests/data/meshes that cannot give a surface, and the code they must give
EXPECTED_SKIPS = {"points_emptyface.ply": "mesh.empty"}


def _mesh_files(meshes_dir):
    return sorted(p for p in meshes_dir.iterdir() if p.suffix.lower() != ".md")


def test_every_real_mesh_loads_or_gives_a_typed_reason(meshes_dir):
    files = _mesh_files(meshes_dir)
    assert len(files) >= 15
    for path in files:
        if path.name in EXPECTED_SKIPS:
            with pytest.raises(InvalidMesh) as e:
                load_mesh(path)
            assert e.value.code == EXPECTED_SKIPS[path.name] and e.value.advice
            continue
        mesh = load_mesh(path)
        assert isinstance(mesh, trimesh.Trimesh), path.name
        assert len(mesh.faces) > 0 and np.isfinite(mesh.vertices).all(), path.name
        assert (mesh.area_faces > 0).all(), path.name
        assert len(np.unique(mesh.faces)) == len(mesh.vertices), path.name  # no unused vertices


def test_scenes_are_flattened_with_node_transforms(meshes_dir):
    scene = trimesh.load(meshes_dir / "nested.glb")
    assert isinstance(scene, trimesh.Scene) and len(scene.graph.nodes_geometry) > 1
    mesh = load_mesh(meshes_dir / "nested.glb")
    np.testing.assert_allclose(mesh.bounds, scene.bounds, atol=1e-6)
    raw = trimesh.util.concatenate(list(scene.geometry.values()))
    assert not np.allclose(raw.bounds, scene.bounds)  # the transforms matter for this file
    textured = load_mesh(meshes_dir / "BoxTextured.glb")
    assert len(textured.faces) == 12 and textured.is_watertight  # UV seams merged


def test_y_up_rotates_into_z_up(meshes_dir):
    path = meshes_dir / "featuretype.STL"
    z = load_mesh(path)
    y = load_mesh(path, y_up=True)
    np.testing.assert_allclose(y.vertices, z.vertices @ Y_UP_TO_Z_UP.T, atol=1e-9)
    np.testing.assert_allclose(Y_UP_TO_Z_UP @ [0, 1, 0], [0, 0, 1])  # up becomes +Z
    np.testing.assert_allclose(Y_UP_TO_Z_UP @ [0, 0, 1], [0, -1, 0])  # +Z (towards viewer) becomes front (-Y)
    assert np.isclose(np.linalg.det(Y_UP_TO_Z_UP), 1.0)
    assert y.volume > 0  # a rotation keeps outward orientation


def test_bad_inputs_raise_typed_errors(tmp_path):
    with pytest.raises(MeshUnreadable):
        load_mesh(tmp_path / "missing.obj")
    (tmp_path / "model.fbx").write_bytes(b"Kaydara FBX Binary")
    with pytest.raises(MeshUnreadable):
        load_mesh(tmp_path / "model.fbx")
    (tmp_path / "empty.obj").write_bytes(b"")
    with pytest.raises(EmptyMesh):
        load_mesh(tmp_path / "empty.obj")
    (tmp_path / "nan.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 inf 0\nf 1 2 3\n")
    with pytest.raises(NonFiniteMesh) as e:
        load_mesh(tmp_path / "nan.obj")
    assert e.value.code == "mesh.non_finite" and isinstance(e.value, InvalidMesh)
    (tmp_path / "garbage.off").write_text("OFF\n3 1 0\n0 0 0\n1 zero 0\n")
    with pytest.raises(MeshUnreadable):
        load_mesh(tmp_path / "garbage.off")
    (tmp_path / "lines.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nl 1 2\nl 2 3\n")
    with pytest.raises(EmptyMesh):
        load_mesh(tmp_path / "lines.obj")


def test_zero_area_faces_are_dropped_and_error_only_when_nothing_is_left(tmp_path):
    (tmp_path / "mixed.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nv 2 0 0\nv 3 0 0\n"
                                        "f 1 2 3\nf 1 2 4\nf 2 4 5\nf 1 1 2\n")
    mesh = load_mesh(tmp_path / "mixed.obj")
    assert len(mesh.faces) == 1 and len(mesh.vertices) == 3
    (tmp_path / "flat.obj").write_text("v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\nf 1 3 2\n")
    with pytest.raises(EmptyMesh) as e:
        load_mesh(tmp_path / "flat.obj")
    assert "non-zero area" in e.value.message


def test_oversized_meshes_are_refused_quickly(tmp_path, meshes_dir):
    # a header announcing 10M faces is refused before anything is parsed
    (tmp_path / "huge.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 5000002\n"
                                        b"property float x\nproperty float y\nproperty float z\n"
                                        b"element face 10000000\nproperty list uchar int vertex_indices\n"
                                        b"end_header\n" + b"\0" * 1024)
    t = time.perf_counter()
    with pytest.raises(MeshTooLarge) as e:
        load_mesh(tmp_path / "huge.ply")
    assert time.perf_counter() - t < 1.0
    assert "10,000,000" in e.value.message and e.value.advice
    # a big OBJ is counted by lines, not parsed
    with open(tmp_path / "big.obj", "wb") as fh:
        fh.write(b"v 0 0 0\nv 1 0 0\nv 0 1 0\n" + b"f 1 2 3\n" * 2_200_000)
    assert peek_face_count(tmp_path / "big.obj") == 2_200_000
    with pytest.raises(MeshTooLarge):
        load_mesh(tmp_path / "big.obj", max_faces=1_000_000)
    # exact binary STL count from its header
    n = 4
    with open(tmp_path / "tiny.stl", "wb") as fh:
        fh.write(b"\0" * 80 + struct.pack("<I", n) + b"\0" * 50 * n)
    assert peek_face_count(tmp_path / "tiny.stl") == n
    with pytest.raises(MeshTooLarge):
        load_mesh(meshes_dir / "torus.STL", max_faces=1000)
    with pytest.raises(MeshTooLarge):
        load_mesh(meshes_dir / "torus.STL", max_file_bytes=1000)
    assert peek_face_count(meshes_dir / "nested.glb") == 36


def _touch_mesh(path, meshes_dir, name="unit_sphere.STL"):
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(meshes_dir / name, path)


def test_folder_layouts(tmp_path, meshes_dir):
    shapenet = tmp_path / "shapenet"
    _touch_mesh(shapenet / "03001627" / "1a2b" / "model.obj", meshes_dir, "tube.obj")
    _touch_mesh(shapenet / "03001627" / "3c4d" / "models" / "model_normalized.obj", meshes_dir, "tube.obj")
    _touch_mesh(shapenet / "04379243" / "9z" / "model.obj", meshes_dir, "tube.obj")
    assert detect_layout(shapenet) == "shapenet"
    entries = list(iter_mesh_folder(shapenet))
    assert [(c, i) for c, i, _ in entries] == [("03001627", "1a2b"), ("03001627", "3c4d"), ("04379243", "9z")]
    assert entries[1].path.name == "model_normalized.obj"

    modelnet = tmp_path / "modelnet"
    _touch_mesh(modelnet / "chair" / "train" / "chair_0001.off", meshes_dir, "ballA.off")
    _touch_mesh(modelnet / "chair" / "test" / "chair_0900.off", meshes_dir, "ballA.off")
    _touch_mesh(modelnet / "desk" / "train" / "desk_0001.off", meshes_dir, "ballA.off")
    (modelnet / "chair" / "train" / "notes.txt").write_text("not a mesh")
    assert detect_layout(modelnet) == "modelnet"
    entries = list(iter_mesh_folder(modelnet))
    assert [(c, i, p.parent.name) for c, i, p in entries] == [
        ("chair", "chair_0001", "train"), ("chair", "chair_0900", "test"), ("desk", "desk_0001", "train")]

    flat = tmp_path / "props"
    _touch_mesh(flat / "rock.stl", meshes_dir)
    _touch_mesh(flat / "crates" / "crate one.glb", meshes_dir, "BoxTextured.glb")
    _touch_mesh(flat / "crates" / "crate one.stl", meshes_dir)
    assert detect_layout(flat) == "flat"
    entries = list(iter_mesh_folder(flat, layout="flat", y_up=True))
    assert [(c, i) for c, i, _ in entries] == [("props", "rock"), ("crates", "crate_one"), ("crates", "crate_one-2")]
    assert entries[0].y_up and entries[0].load().is_watertight

    with pytest.raises(MeshUnreadable):
        list(iter_mesh_folder(tmp_path / "nowhere"))
    with pytest.raises(MeshUnreadable):
        list(iter_mesh_folder(flat, layout="objaverse"))


def test_scan_folder_never_raises_and_counts_skips(tmp_path, meshes_dir):
    root = tmp_path / "lib" / "misc"
    root.mkdir(parents=True)
    for p in _mesh_files(meshes_dir):
        shutil.copy(p, root / p.name)
    (root / "bad.stl").write_bytes(b"solid x\nfacet normal 0 0 1\nouter loop\nvertex 0 0 nan\n")
    ok, skipped = scan_folder(tmp_path / "lib")
    assert len(ok) + len(skipped) == len(_mesh_files(meshes_dir)) + 1
    reasons = {s["path"].rsplit("/", 1)[-1]: s["code"] for s in skipped}
    assert reasons["points_emptyface.ply"] == "mesh.empty"
    assert reasons["bad.stl"].startswith("mesh.")
    assert all(s["reason"] for s in skipped)


def test_gltf_with_external_buffer(tmp_path):
    from engine.data.procedural import generate_shape

    ref = generate_shape("mug", 0).mesh
    files = ref.export(file_type="gltf")  # {"model.gltf": json, "gltf_buffer_*.bin": data}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    path = tmp_path / "model.gltf"
    assert peek_face_count(path) == len(ref.faces)
    mesh = load_mesh(path)
    assert len(mesh.faces) == len(ref.faces) and mesh.is_watertight
    np.testing.assert_allclose(mesh.bounds, ref.bounds, atol=1e-5)
