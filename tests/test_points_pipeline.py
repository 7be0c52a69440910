"""The `points` pipeline: status, validation errors, generate/refine with a tiny model,
and (when installed) the shipped checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from engine.errors import InvalidMesh, InvalidRequest, JobCancelled, LatentforgeError, ModelUnavailable
from engine.pipelines.points import DEFAULT_CHECKPOINT, PointsPipeline

from points_job_context import RecordingContext

torch.set_num_threads(1)


Ctx = RecordingContext


def test_status_reports_missing_checkpoint(tmp_path):
    p = PointsPipeline(tmp_path / "nothing")
    st = p.status()
    assert st["available"] is False and "does not exist" in st["reason"]
    assert st["tasks"]["generate"]["available"] is False
    with pytest.raises(ModelUnavailable) as e:
        p.validate("generate", {"category": "chair"})
    assert e.value.code == "points.checkpoint_missing"


def test_status_available_and_tasks(tiny_ckpt):
    st = PointsPipeline(tiny_ckpt).status()
    assert st["available"] and st["categories"] == ["chair", "table"]
    assert st["tasks"]["generate"]["available"] and st["tasks"]["refine"]["available"]
    assert not st["tasks"]["views"]["available"]


@pytest.mark.parametrize("params,code", [
    ({"category": "spaceship"}, "points.unknown_category"),
    ({"prompt": "a chair next to a table"}, "points.unknown_category"),
    ({"category": "chair", "steps": 0}, "request.invalid"),
    ({"category": "chair", "guidance": float("nan")}, "request.invalid"),
    ({"category": "chair", "count": 65}, "request.invalid"),
    ({"category": "chair", "colour": "red"}, "request.invalid"),
    ({"image": "image"}, "points.image_condition_unsupported"),
])
def test_generate_validation_errors(tiny_ckpt, params, code):
    with pytest.raises(LatentforgeError) as e:
        PointsPipeline(tiny_ckpt).validate("generate", params)
    assert e.value.code == code and e.value.advice


def test_generate_runs_with_progress_previews_and_seeds(tiny_ckpt):
    p = PointsPipeline(tiny_ckpt)
    params = p.validate("generate", {"prompt": "a small chair", "count": 3, "steps": 4, "n_points": 100, "seed": 7})
    assert params["category"] == "chair"
    ctx = Ctx()
    res = p.run("generate", params, ctx)
    assert [r.meta["seed"] for r in res] == [7, 8, 9]
    assert all(r.kind == "points" and r.arrays["points"].shape == (100, 3) for r in res)
    assert all(np.isfinite(r.arrays["points"]).all() for r in res)
    denoise = [s for s in ctx.steps if s[0] == "denoise"]
    assert denoise[-1][1] == denoise[-1][2] == 8
    assert ctx.previews and ctx.previews[0][1]["points"].shape == (512, 3)
    # shape i depends on its seed only, not on the batch it was drawn in
    one = p.run("generate", p.validate("generate", {"category": "chair", "steps": 4, "n_points": 100, "seed": 8}), Ctx())
    first_latent = res[1].arrays["points"]
    assert np.abs(one[0].arrays["points"].mean(0) - first_latent.mean(0)).max() < 0.05


def test_cancellation_stops_the_job(tiny_ckpt):
    p = PointsPipeline(tiny_ckpt)
    with pytest.raises(JobCancelled):
        p.run("generate", p.validate("generate", {"category": "table", "steps": 10}), Ctx(cancel_at=3))


def _mesh_arrays(mesh):
    return {"vertices": np.asarray(mesh.vertices, np.float32), "faces": np.asarray(mesh.faces, np.int32)}


def test_refine_restores_the_object_frame(tiny_ckpt):
    p = PointsPipeline(tiny_ckpt)
    box = trimesh.creation.box(extents=(4.0, 2.0, 1.0))
    box.apply_translation((10.0, -5.0, 3.0))
    params = p.validate("refine", {"strength": 0.0, "seed": 1, "arrays": _mesh_arrays(box)})
    res = p.run("refine", params, Ctx())
    pts = res[0].arrays["points"]
    assert np.allclose(pts.mean(0), (10.0, -5.0, 3.0), atol=0.6)
    assert np.allclose(np.ptp(pts, 0), (4.0, 2.0, 1.0), atol=1.2)
    assert res[0].meta["normalization"]["scale"] == pytest.approx(2.0, rel=1e-3)
    res = p.run("refine", p.validate("refine", {"strength": 0.6, "steps": 4, "category": "table",
                                                 "arrays": {"points": np.asarray(box.vertices, np.float32)}}), Ctx())
    assert np.isfinite(res[0].arrays["points"]).all()


def _bad_inputs():
    box = trimesh.creation.box()
    nan = _mesh_arrays(box)
    nan["vertices"][0, 0] = np.nan
    return [
        ({}, "points.refine_input_missing"),
        ({"vertices": np.zeros((8, 3), np.float32), "faces": np.zeros((0, 3), np.int32)}, "mesh.empty"),
        (nan, "mesh.non_finite"),
        ({"points": np.ones((1, 3), np.float32)}, "points.degenerate_input"),
        ({"points": np.ones((50, 3), np.float32)}, "points.degenerate_input"),
        ({"vertices": np.zeros((3, 3), np.float32), "faces": np.array([[0, 1, 2]], np.int32)}, "points.degenerate_input"),
    ]


@pytest.mark.parametrize("arrays,code", _bad_inputs())
def test_refine_bad_input_gets_a_typed_error(tiny_ckpt, arrays, code):
    p = PointsPipeline(tiny_ckpt)
    with pytest.raises(LatentforgeError) as e:
        params = p.validate("refine", {"strength": 0.5, "arrays": arrays})
        p.run("refine", params, Ctx())
    assert e.value.code == code, e.value
    assert isinstance(e.value, (InvalidMesh, InvalidRequest))


def test_refine_huge_mesh_is_refused_before_running(tiny_ckpt, monkeypatch):
    import engine.models.points.inputs as inputs
    monkeypatch.setattr(inputs, "MAX_FACES", 10)
    box = trimesh.creation.box()
    with pytest.raises(InvalidMesh) as e:
        PointsPipeline(tiny_ckpt).validate("refine", {"strength": 0.5, "arrays": _mesh_arrays(box)})
    assert e.value.code == "points.input_too_large"


@pytest.mark.skipif(not (DEFAULT_CHECKPOINT / "model.safetensors").is_file(), reason="no shipped checkpoint")
def test_shipped_checkpoint_samples_shapes():
    p = PointsPipeline()
    assert p.status()["available"]
    params = p.validate("generate", {"category": p.categories()[0], "count": 2, "steps": 5, "seed": 0})
    res = p.run("generate", params, Ctx())
    for r in res:
        pts = r.arrays["points"]
        assert pts.shape == (2048, 3) and np.isfinite(pts).all()
        assert np.abs(pts).max() < 1.6      # the canonical frame is [-1, 1]^3
        assert np.ptp(pts, 0).max() > 0.8   # a shape, not a collapsed blob
