"""Dataset build (tiny, low resolution), resumability, loading point sets, exports."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import trimesh

from engine.cli import main as cli_main
from engine.data.dataset import (BuildSettings, ShapeTask, build_dataset, build_shape, export_shapes, folder_tasks,
                                 grid_vertices, is_complete, load_point_sets, procedural_tasks, shape_dir)
from engine.data.errors import DatasetMismatch, DatasetNotFound, InvalidExportFormat
from engine.data.procedural import generate_shape

TINY = BuildSettings(n_points=256, grid_res=8, render_size=24, fixed_views=2, random_views=2)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    report = build_dataset(root, procedural_tasks("train", ["chair", "mug"], 2), TINY, workers=1, progress=False)
    return root, report


def test_build_writes_every_file_with_documented_contents(tiny_dataset):
    root, report = tiny_dataset
    assert report.built == 4 and report.existing == 0 and not report.skipped
    folder = shape_dir(root, "train", "chair", "chair-000000")
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["category"] == "chair" and meta["seed"] == 0 and meta["split"] == "train"
    assert meta["captions"] == generate_shape("chair", 0).captions and meta["params"]
    assert meta["settings"] == TINY.to_json() and meta["watertight"] is True

    mesh = trimesh.load(folder / "mesh.ply", process=False)
    ref = generate_shape("chair", 0).mesh
    np.testing.assert_allclose(mesh.vertices, ref.vertices, atol=1e-6)
    assert mesh.is_watertight

    with np.load(folder / "points.npz") as d:
        assert d["points"].shape == (256, 3) and d["points"].dtype == np.float32
        assert d["normals"].shape == (256, 3)
        np.testing.assert_allclose(np.linalg.norm(d["normals"], axis=1), 1.0, atol=1e-4)
        assert np.abs(d["points"]).max() <= 1.0 + 1e-5
    with np.load(folder / "sdf.npz") as d:
        grid = grid_vertices(8)
        assert d["sdf"].shape == (len(grid),) and int(d["resolution"]) == 8
        assert (d["sdf"] < 0).any() and (d["sdf"] > 0).any()
        # the cube's corners are outside every shape
        corner = np.argmax(grid.sum(axis=1))
        assert d["sdf"][corner] > 0
    with np.load(folder / "renders.npz") as d:
        assert d["rgba"].shape == (4, 24, 24, 4) and d["rgba"].dtype == np.uint8
        assert d["c2w"].shape == (4, 4, 4) and int(d["n_fixed"]) == 2
        alpha = d["rgba"][..., 3]
        assert set(np.unique(alpha)) <= {0, 255} and (alpha == 255).any()
        # tight framing: the shape fills much of the view and is never cut by the border
        border = np.concatenate([alpha[:, 0], alpha[:, -1], alpha[:, :, 0], alpha[:, :, -1]], axis=1)
        assert not border.any()
        assert (alpha[:2] == 255).mean() > 0.1
        np.testing.assert_allclose(d["azimuth"][:2], [0.0, np.pi], atol=1e-6)

    index = json.loads((root / "index.json").read_text())
    assert index["counts"] == {"train": {"chair": 2, "mug": 2}}
    assert {s["shape_id"] for s in index["shapes"]} == {"chair-000000", "chair-000001", "mug-000000", "mug-000001"}


def test_build_is_resumable_and_rebuilds_incomplete_or_changed(tiny_dataset, tmp_path):
    src, _ = tiny_dataset
    root = tmp_path / "copy"
    shutil.copytree(src, root)
    tasks = procedural_tasks("train", ["chair", "mug"], 2)
    again = build_dataset(root, tasks, TINY, progress=False)
    assert again.built == 0 and again.existing == 4
    # a shape interrupted before its meta.json was written is rebuilt; others untouched
    broken = shape_dir(root, "train", "mug", "mug-000001")
    (broken / "meta.json").unlink()
    keep = shape_dir(root, "train", "chair", "chair-000000") / "sdf.npz"
    mtime = os.stat(keep).st_mtime_ns
    resumed = build_dataset(root, tasks, TINY, progress=False)
    assert resumed.built == 1 and resumed.existing == 3
    assert os.stat(keep).st_mtime_ns == mtime
    assert is_complete(broken, TINY)
    # a missing data file also makes the shape incomplete
    (broken / "points.npz").unlink()
    assert not is_complete(broken, TINY)
    # different settings: the shape is not complete for them
    assert not is_complete(shape_dir(root, "train", "chair", "chair-000000"), BuildSettings(n_points=512, grid_res=8))
    assert not list(root.rglob("*.tmp"))


def test_load_point_sets(tiny_dataset):
    root, _ = tiny_dataset
    pts, cats, ids = load_point_sets(root, "train", n_points=200)
    assert pts.shape == (4, 200, 3) and pts.dtype == np.float32
    assert cats == ["chair", "chair", "mug", "mug"] and ids[0] == "chair-000000"
    pts, cats, _ = load_point_sets(root, "train", categories=["mug"], n_points=256)
    assert pts.shape == (2, 256, 3) and cats == ["mug", "mug"]
    with pytest.raises(DatasetMismatch):
        load_point_sets(root, "train", n_points=4096)
    with pytest.raises(DatasetNotFound):
        load_point_sets(root, "test")


def test_parallel_build_no_renders_and_cli(tmp_path):
    out = tmp_path / "cli"
    rc = cli_main(["dataset", "build", "--out", str(out), "--categories", "bottle", "--per-category", "2",
                   "--split", "val", "--grid-res", "6", "--n-points", "64", "--no-renders", "--workers", "2",
                   "--no-progress"])
    assert rc == 0
    folder = shape_dir(out, "val", "bottle", "bottle-1000000")
    assert (folder / "sdf.npz").is_file() and not (folder / "renders.npz").exists()
    assert json.loads((out / "index.json").read_text())["counts"] == {"val": {"bottle": 2}}


def test_build_from_folder_skips_bad_meshes_with_reasons(tmp_path, meshes_dir):
    src = tmp_path / "user" / "things"
    src.mkdir(parents=True)
    for name in ("unit_sphere.STL", "soup.stl", "points_emptyface.ply", "nested.glb"):
        shutil.copy(meshes_dir / name, src / name)
    (src / "broken.obj").write_text("v 0 0 0\nv nan 0 0\nv 0 1 0\nf 1 2 3\n")
    (src / "garbage.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 99\n")
    tasks = folder_tasks(tmp_path / "user")
    assert {t.category for t in tasks} == {"things"} and len(tasks) == 6
    report = build_dataset(tmp_path / "ds", tasks, TINY, progress=False)
    assert report.built == 3
    codes = {s["shape_id"]: s["code"] for s in report.skipped}
    assert codes["points_emptyface"] == "mesh.empty"
    assert codes["broken"] == "mesh.non_finite"
    assert codes["garbage"] == "mesh.unreadable"
    index = json.loads((tmp_path / "ds" / "index.json").read_text())
    assert index["last_build"]["skipped"] == 3
    meta = json.loads((shape_dir(tmp_path / "ds", "train", "things", "soup") / "meta.json").read_text())
    assert meta["source"].endswith("soup.stl") and meta["normalization"]["scale"] > 0
    pts, _, _ = load_point_sets(tmp_path / "ds", "train", n_points=256)
    assert np.abs(pts).max() <= 1 + 1e-5


def test_build_shape_reports_unknown_failures_without_raising(tmp_path):
    task = ShapeTask("train", "x", "missing", source=str(tmp_path / "nope.obj"))
    r = build_shape(task, tmp_path, TINY, grid_vertices(4))
    assert r["status"] == "skipped" and r["code"] == "mesh.unreadable"


@pytest.mark.parametrize("fmt", ["ply", "obj", "glb", "stl"])
def test_export_formats_round_trip(tmp_path, fmt):
    paths = export_shapes(tmp_path, "test", 1, fmt, ["mug", "chair"], progress=False)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in paths) == [
        f"chair/chair-2000000.{fmt}", f"mug/mug-2000000.{fmt}"]
    loaded = trimesh.load(tmp_path / "chair" / f"chair-2000000.{fmt}", force="mesh")
    ref = generate_shape("chair", 2_000_000).mesh
    np.testing.assert_allclose(loaded.bounds, ref.bounds, atol=1e-5)
    assert abs(loaded.area - ref.area) < 1e-3 * ref.area


def test_export_y_up_and_bad_format(tmp_path):
    from engine.data.meshio import load_mesh

    (path,) = export_shapes(tmp_path, "test", 1, "glb", ["lamp"], y_up=True, progress=False)
    ref = generate_shape("lamp", 2_000_000).mesh
    raw = trimesh.load(path, force="mesh")
    np.testing.assert_allclose(raw.extents, ref.extents[[0, 2, 1]], atol=1e-5)  # Y is up in the file
    back = load_mesh(path, y_up=True)
    np.testing.assert_allclose(back.bounds, ref.bounds, atol=1e-5)
    with pytest.raises(InvalidExportFormat):
        export_shapes(tmp_path, "test", 1, "fbx", ["lamp"], progress=False)
    assert cli_main(["dataset", "export", "--out", str(tmp_path / "e"), "--per-category", "1", "--categories",
                     "vase", "--format", "obj", "--no-progress"]) == 0
    assert (tmp_path / "e" / "vase" / "vase-2000000.obj").is_file()


def test_folder_tasks_take_the_split_from_modelnet_folders(tmp_path, meshes_dir):
    for split in ("train", "test"):
        (tmp_path / "mn" / "ball" / split).mkdir(parents=True)
        shutil.copy(meshes_dir / "ballA.off", tmp_path / "mn" / "ball" / split / f"ball_{split}.off")
    tasks = folder_tasks(tmp_path / "mn")
    assert sorted((t.split, t.shape_id) for t in tasks) == [("test", "ball_test"), ("train", "ball_train")]
    assert {t.split for t in folder_tasks(tmp_path / "mn", split="val")} == {"val"}
    assert folder_tasks(tmp_path / "mn", categories=["other"]) == []


def test_interrupted_build_still_indexes_finished_shapes(tmp_path, monkeypatch):
    import engine.data.dataset as ds

    real = ds.build_shape
    calls = []

    def build_then_interrupt(task, *args):
        if calls:
            raise KeyboardInterrupt
        calls.append(task)
        return real(task, *args)

    monkeypatch.setattr(ds, "build_shape", build_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        build_dataset(tmp_path, procedural_tasks("train", ["bottle"], 3), TINY, progress=False)
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["counts"] == {"train": {"bottle": 1}}
    monkeypatch.setattr(ds, "build_shape", real)
    assert build_dataset(tmp_path, procedural_tasks("train", ["bottle"], 3), TINY, progress=False).built == 2


def test_stored_sdf_grid_extends_past_the_cube_so_extracted_surfaces_close(tiny_dataset):
    import torch

    from engine.geometry.marching_tets import extract_meshes

    root, _ = tiny_dataset
    for shape_id, category in (("chair-000000", "chair"), ("mug-000000", "mug")):
        with np.load(shape_dir(root, "train", category, shape_id) / "sdf.npz") as d:
            sdf, res, bound = d["sdf"], int(d["resolution"]), float(d["bound"])
        assert bound > 1.0
        # no capping: the stored values alone must give a closed surface
        (v, f), = extract_meshes(torch.from_numpy(sdf), res, bound=bound, close=False)
        mesh = trimesh.Trimesh(v.detach().numpy(), f.numpy(), process=True)
        assert len(mesh.faces) > 0 and mesh.is_watertight
