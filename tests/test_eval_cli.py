"""`latentforge eval points|classify|images` and the point/mesh readers behind them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh

from engine.cli import main
from engine.errors import InvalidMesh
from engine.eval.errors import (EmptyShape, NonFiniteShape, NoShapes, ShapeFileTooLarge,
                                TooFewPoints, UnreadableShapeFile)
from engine.eval.readers import find_shape_files, read_point_folder, read_points


def _procedural_mesh(category: str, seed: int) -> trimesh.Trimesh:
    from engine.data.procedural import generate_shape
    return generate_shape(category, seed).mesh


def _write_set(root: Path, split: str, per_category: int, categories=("chair", "table")) -> None:
    from engine.data.procedural import split_seeds
    for cat in categories:
        (root / cat).mkdir(parents=True, exist_ok=True)
        for k, seed in enumerate(split_seeds(split, per_category)):
            mesh = _procedural_mesh(cat, seed)
            if k % 2:  # mix mesh files and point files
                pts, _ = trimesh.sample.sample_surface(mesh, 400, seed=seed)
                np.savez(root / cat / f"{cat}-{seed}.npz", points=pts.astype(np.float32))
            else:
                mesh.export(root / cat / f"{cat}-{seed}.ply")


def _run(argv: list[str], capsys) -> tuple[int, dict | None, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, (json.loads(out.out) if code == 0 else None), out.err


def test_reads_real_meshes_and_rejects_bad_files(meshes_dir: Path, tmp_path: Path):
    for name in ("unit_sphere.STL", "suzanne.ply", "rabbit.obj", "ballA.off", "nested.glb", "soup.stl"):
        pts = read_points(meshes_dir / name, 300, seed=1)
        assert pts.shape == (300, 3) and pts.dtype == np.float32 and np.isfinite(pts).all()
    assert np.array_equal(read_points(meshes_dir / "torus.STL", 100, seed=3),
                          read_points(meshes_dir / "torus.STL", 100, seed=3))
    # A PLY with vertices and no faces is a point cloud: subsampled, or too few points.
    assert read_points(meshes_dir / "points_emptyface.ply", 512).shape == (512, 3)
    with pytest.raises(TooFewPoints):
        read_points(meshes_dir / "points_emptyface.ply", 2048)
    padded = read_points(meshes_dir / "points_emptyface.ply", 2048, pad=True)
    assert padded.shape == (2048, 3) and len(np.unique(padded, axis=0)) == 1024

    (tmp_path / "empty.ply").write_bytes(b"")
    (tmp_path / "garbage.obj").write_bytes(b"\x00\xff not an obj \x00" * 10)
    (tmp_path / "garbage.npz").write_bytes(b"PK\x03\x04 broken zip")
    (tmp_path / "notes.txt").write_text("hello")
    np.savez(tmp_path / "nan.npz", points=np.full((3000, 3), np.nan))
    np.savez(tmp_path / "twod.npz", points=np.zeros((3000, 2)))
    np.savez(tmp_path / "nokey.npz", a=np.zeros((10, 3)), b=np.zeros((10, 3)))
    flat = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [2, 0, 0]], [[0, 1, 2]], process=False)
    flat.export(tmp_path / "zero_area.ply")
    nan_mesh = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [0, np.nan, 0]], [[0, 1, 2]], process=False)
    nan_mesh.export(tmp_path / "nan_mesh.obj")
    expected = {"empty.ply": EmptyShape, "garbage.npz": UnreadableShapeFile,
                "notes.txt": UnreadableShapeFile, "nan.npz": NonFiniteShape,
                "twod.npz": UnreadableShapeFile, "nokey.npz": UnreadableShapeFile,
                "zero_area.ply": EmptyShape, "nan_mesh.obj": NonFiniteShape}
    for name, err in expected.items():
        with pytest.raises(err) as info:
            read_points(tmp_path / name, 256)
        assert isinstance(info.value, InvalidMesh) and info.value.advice, name
    # Whatever trimesh makes of binary garbage, the reader answers with a typed error.
    with pytest.raises(InvalidMesh):
        read_points(tmp_path / "garbage.obj", 256)
    with pytest.raises(ShapeFileTooLarge):
        read_points(meshes_dir / "cycloidal.ply", 256, max_file_mb=0.01)


def test_folder_layouts_give_ids_and_categories(tmp_path: Path):
    # Dataset cache layout: <category>/<shape_id>/{points.npz, mesh.ply, sdf.npz, meta.json}.
    shape_dir = tmp_path / "ds" / "mug" / "mug-000001"
    shape_dir.mkdir(parents=True)
    np.savez(shape_dir / "points.npz", points=np.random.rand(2048, 3), normals=np.random.rand(2048, 3))
    np.savez(shape_dir / "sdf.npz", sdf=np.random.rand(100))
    (shape_dir / "meta.json").write_text("{}")
    _procedural_mesh("mug", 1).export(shape_dir / "mesh.ply")
    files = find_shape_files(tmp_path / "ds")
    assert [(f.path.name, f.shape_id, f.category) for f in files] == [("points.npz", "mug/mug-000001", "mug")]
    # Flat layout: no category.
    flat = tmp_path / "flat"
    flat.mkdir()
    np.savez(flat / "a.npz", points=np.random.rand(500, 3))
    assert [(f.shape_id, f.category) for f in find_shape_files(flat)] == [("a", None)]
    # Batches S×N×3 in one file (the points model's --samples-out): category from the name.
    batches = tmp_path / "batches"
    batches.mkdir()
    chairs = np.random.rand(3, 2048, 3)
    chairs[1, 5] = np.nan
    np.savez(batches / "chair.npz", points=chairs)
    np.savez(batches / "table.npz", points=np.random.rand(2, 1000, 3))
    folder = read_point_folder(batches, 512)
    assert folder.ids == ["chair/0", "chair/2", "table/0", "table/1"]
    assert folder.categories == ["chair", "chair", "table", "table"]
    assert folder.points.shape == (4, 512, 3)
    assert folder.skipped["chair/1"]["code"] == "mesh.non_finite"
    with pytest.raises(UnreadableShapeFile):
        read_points(batches / "chair.npz", 512)
    with pytest.raises(NoShapes):
        read_point_folder(tmp_path / "missing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.ply").write_bytes(b"")
    with pytest.raises(NoShapes) as info:
        read_point_folder(tmp_path / "bad")
    assert "x" in info.value.details["skipped"]


def test_eval_points_json_per_category_and_skips(tmp_path: Path, capsys):
    gen, ref = tmp_path / "gen", tmp_path / "ref"
    _write_set(gen, "val", 4)
    _write_set(ref, "test", 4)
    (gen / "chair" / "broken.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 3\n")
    np.savez(gen / "chair" / "nan.npz", points=np.full((400, 3), np.nan))
    code, result, _ = _run(["eval", "points", "--generated", str(gen), "--reference", str(ref),
                            "--n-points", "256", "--emd-points", "64", "--per-category"], capsys)
    assert code == 0
    for key in ("1nna_cd", "1nna_emd", "cov_cd", "cov_emd", "mmd_cd", "mmd_emd"):
        assert isinstance(result[key], float) and np.isfinite(result[key])
    assert 0 <= result["1nna_cd"] <= 1 and 0 <= result["cov_emd"] <= 1
    assert result["n_generated"] == 8 and result["n_reference"] == 8
    assert set(result["skipped"]["generated"]) == {"chair/broken", "chair/nan"}
    assert result["skipped"]["generated"]["chair/nan"]["code"] == "mesh.non_finite"
    assert set(result["per_category"]) == {"chair", "table"}
    assert result["per_category"]["chair"]["n_generated"] == 4

    out_file = tmp_path / "m.json"
    code, cd_only, _ = _run(["eval", "points", "--generated", str(gen), "--reference", str(gen),
                             "--n-points", "128", "--no-emd", "--out", str(out_file)], capsys)
    assert code == 0 and cd_only["cov_cd"] == 1.0 and cd_only["mmd_cd"] == 0.0
    assert cd_only["1nna_emd"] is None and json.loads(out_file.read_text()) == cd_only


def test_eval_points_errors_are_reported_not_raised(tmp_path: Path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = _run(["eval", "points", "--generated", str(tmp_path / "empty"),
                         "--reference", str(tmp_path / "empty")], capsys)
    assert code == 1 and "eval.no_shapes" in err
    flat = tmp_path / "flat"
    flat.mkdir()
    for k in range(3):
        np.savez(flat / f"{k}.npz", points=np.random.rand(300, 3))
    code, _, err = _run(["eval", "points", "--generated", str(flat), "--reference", str(flat),
                         "--n-points", "256", "--per-category"], capsys)
    assert code == 1 and "eval.no_common_categories" in err
    import torch
    if not torch.cuda.is_available():
        code, _, err = _run(["eval", "points", "--generated", str(flat), "--reference", str(flat),
                             "--n-points", "256", "--device", "cuda"], capsys)
        assert code == 1 and "device.unavailable" in err


def test_eval_classify_scores_folder_names(tmp_path: Path, capsys):
    inp = tmp_path / "shapes"
    _write_set(inp, "test", 2, categories=("chair", "mug", "airplane"))
    (inp / "unknown").mkdir()
    np.savez(inp / "unknown" / "blob.npz", points=np.random.rand(3000, 3))
    (inp / "mug" / "empty.obj").write_text("")
    code, result, _ = _run(["eval", "classify", "--input", str(inp)], capsys)
    assert code == 0
    assert result["n_files"] == 7 and result["n_scored"] == 6
    assert result["per_file"]["unknown/blob"]["label"] in result["categories"]
    assert "correct" not in result["per_file"]["unknown/blob"]
    assert result["skipped"]["mug/empty"]["code"] == "mesh.empty"
    scored = [v for v in result["per_file"].values() if "correct" in v]
    assert result["accuracy"] == pytest.approx(np.mean([v["correct"] for v in scored]))
    assert result["accuracy"] >= 5 / 6


def test_eval_classify_without_checkpoint_is_a_typed_error(tmp_path: Path, capsys):
    inp = tmp_path / "in"
    inp.mkdir()
    np.savez(inp / "a.npz", points=np.random.rand(3000, 3))
    code, _, err = _run(["eval", "classify", "--input", str(inp), "--checkpoint", str(tmp_path / "none")],
                        capsys)
    assert code == 1 and "eval.classifier_missing" in err


def test_eval_images(tmp_path: Path, capsys):
    from PIL import Image

    rng = np.random.default_rng(0)
    pred, target = tmp_path / "pred", tmp_path / "target"
    pred.mkdir()
    target.mkdir()
    img = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    Image.fromarray(img).save(target / "a.png")
    Image.fromarray(img).save(pred / "a.png")
    noisy = np.clip(img.astype(int) + rng.integers(-20, 21, size=img.shape), 0, 255).astype(np.uint8)
    Image.fromarray(img).save(target / "b.png")
    Image.fromarray(noisy).save(pred / "b.png")
    Image.fromarray(img).save(pred / "c.png")          # no target: skipped
    (pred / "d.png").write_bytes(b"not a png")
    Image.fromarray(img).save(target / "d.png")
    code, result, _ = _run(["eval", "images", "--pred", str(pred), "--target", str(target)], capsys)
    assert code == 0 and result["n_images"] == 2
    assert result["per_image"]["a.png"] == {"psnr": None, "ssim": 1.0, "identical": True}
    assert 20 < result["psnr"] < 40 and result["psnr"] == result["per_image"]["b.png"]["psnr"]
    assert set(result["skipped"]) == {"c.png", "d.png"}
