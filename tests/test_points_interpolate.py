"""The `points` pipeline's `interpolate` task and `output: "mesh"` option: validation errors,
a run with the shipped checkpoint, cancellation, the mesh-output wiring (with a stand-in
reconstruction unless engine/geometry/points_to_mesh.py is installed), protocol task
list, and the `latentforge interpolate` command against a running engine."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
import trimesh

from engine.errors import InvalidMesh, InvalidRequest, JobCancelled, LatentforgeError, ModelUnavailable
from engine.pipelines.points import DEFAULT_CHECKPOINT, PointsPipeline

from points_job_context import RecordingContext

torch.set_num_threads(1)
SHIPPED = (DEFAULT_CHECKPOINT / "model.safetensors").is_file()
needs_shipped = pytest.mark.skipif(not SHIPPED, reason="no shipped checkpoint")
HAVE_P2M = importlib.util.find_spec("engine.geometry.points_to_mesh") is not None


class Ctx(RecordingContext):
    """Previews every third step."""

    def __init__(self, cancel_at: int | None = None) -> None:
        super().__init__(cancel_at, preview_every=3)


def _mesh(prefix, mesh, offset=(0.0, 0.0, 0.0), scale=1.0):
    return {f"{prefix}vertices": (np.asarray(mesh.vertices) * scale + offset).astype(np.float32),
            f"{prefix}faces": np.asarray(mesh.faces, np.int32)}


def _pair():
    box = trimesh.creation.box(extents=(2.0, 1.0, 0.4))
    ball = trimesh.creation.icosphere(subdivisions=2)
    return {**_mesh("a_", box, (5.0, 0.0, 1.0), 3.0), **_mesh("b_", ball, (-4.0, 2.0, 0.0), 0.5)}


def _chamfer(p, q):
    d = ((p[:, None, :] - q[None, :, :]) ** 2).sum(-1)
    return float(d.min(1).mean() + d.min(0).mean())


# ------------------------------------------------------------------------------ validation

def test_status_and_protocol_know_the_task(tiny_ckpt):
    from engine.protocol import TASKS, check_spec
    from engine.pipelines.base import TASKS as BASE_TASKS
    from engine.pipelines.registry import check_task, get_pipeline

    assert "interpolate" in TASKS and TASKS == BASE_TASKS
    assert check_spec({"task": "interpolate", "model": "points"})["task"] == "interpolate"
    with pytest.raises(InvalidRequest):
        check_spec({"task": "morph", "model": "points"})
    st = PointsPipeline(tiny_ckpt).status()
    assert st["tasks"]["interpolate"]["available"]
    with pytest.raises(ModelUnavailable, match="latent space"):
        check_task(get_pipeline("procedural"), "interpolate")


def test_checkpoint_check_names_what_is_missing(tmp_path, tiny_ckpt):
    from engine.models.points.checkpoint import checkpoint_complete

    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    assert checkpoint_complete(tmp_path / "none") == (False, f"checkpoint folder {tmp_path / 'none'} does not exist")
    ok, why = checkpoint_complete(tmp_path / "half")
    assert not ok and "model.safetensors missing" in why
    assert checkpoint_complete(tiny_ckpt) == (True, "")


def test_validate_normalizes(tiny_ckpt):
    p = PointsPipeline(tiny_ckpt)
    out = p.validate("interpolate", {"arrays": _pair(), "category": "chair", "seed": 3})
    assert out["count"] == 5 and out["steps"] == 25 and out["sampler"] == "ddim" and out["guidance"] == 1.0
    assert out["input_a"] == out["input_b"] == "mesh" and out["output"] == "points" and out["mesh_resolution"] == 64
    assert set(out["arrays"]) == {"a_vertices", "a_faces", "b_vertices", "b_faces"}
    pts = p.validate("interpolate", {"arrays": {"a_points": np.random.rand(40, 3), "b_points": np.random.rand(9, 3)}})
    assert pts["input_a"] == pts["input_b"] == "points"


def _bad_params():
    good = _pair()
    no_b = {k: v for k, v in good.items() if k.startswith("a_")}
    no_faces = dict(good, b_faces=np.zeros((0, 3), np.int32))
    return [
        ({"arrays": {}}, "points.interpolate_input_missing", "shape A"),
        ({"arrays": no_b}, "points.interpolate_input_missing", "shape B"),
        ({"arrays": no_faces}, "mesh.empty", "Shape B"),
        ({"arrays": good, "count": 1}, "request.invalid", "'count'"),
        ({"arrays": good, "count": 33}, "request.invalid", "'count'"),
        ({"arrays": good, "guidance": 2.0}, "request.invalid", "guidance"),
        ({"arrays": good, "category": "spaceship"}, "points.unknown_category", "spaceship"),
        ({"arrays": good, "output": "voxels"}, "request.invalid", "'output'"),
        ({"arrays": good, "output": "mesh", "mesh_resolution": 16}, "request.invalid", "mesh_resolution"),
    ]


@pytest.mark.parametrize("params,code,text", _bad_params())
def test_validation_errors_are_typed(tiny_ckpt, params, code, text):
    with pytest.raises(LatentforgeError) as e:
        PointsPipeline(tiny_ckpt).validate("interpolate", params)
    assert e.value.code == code and text in e.value.message and e.value.advice


def _bad_runtime_inputs():
    good = _pair()
    nan = {k: v.copy() for k, v in good.items()}
    nan["a_vertices"][0, 0] = np.nan
    single = {"a_vertices": good["a_vertices"], "a_faces": good["a_faces"], "b_points": np.ones((1, 3), np.float32)}
    return [(nan, "mesh.non_finite", "Shape A"), (single, "points.degenerate_input", "Shape B")]


@pytest.mark.parametrize("arrays,code,text", _bad_runtime_inputs())
def test_bad_inputs_get_typed_errors_naming_the_shape(tiny_ckpt, arrays, code, text):
    p = PointsPipeline(tiny_ckpt)
    with pytest.raises(LatentforgeError) as e:
        p.run("interpolate", p.validate("interpolate", {"arrays": arrays, "count": 2, "steps": 2}), Ctx())
    assert e.value.code == code and text in e.value.message and "refine" not in e.value.message
    assert isinstance(e.value, InvalidMesh)


def test_huge_input_is_refused_before_running(tiny_ckpt, monkeypatch):
    import engine.models.points.inputs as inputs
    monkeypatch.setattr(inputs, "MAX_FACES", 10)
    with pytest.raises(InvalidMesh) as e:
        PointsPipeline(tiny_ckpt).validate("interpolate", {"arrays": _pair()})
    assert e.value.code == "points.input_too_large" and e.value.message.startswith("Shape A")


def test_cancellation_stops_interpolation(tiny_ckpt):
    p = PointsPipeline(tiny_ckpt)
    ctx = Ctx(cancel_at=4)
    with pytest.raises(JobCancelled):
        p.run("interpolate", p.validate("interpolate", {"arrays": _pair(), "count": 3, "steps": 6}), ctx)
    assert len(ctx.steps) == 4  # stopped at the first check after the request, not at the end


# --------------------------------------------------------------------- shipped checkpoint

@needs_shipped
def test_shipped_checkpoint_interpolates_from_a_to_b():
    p = PointsPipeline()
    # few-step inversion loses the shape (docs/points.md "Interpolation"): 20 steps, not 5
    params = p.validate("interpolate", {"arrays": _pair(), "count": 3, "steps": 20, "n_points": 512, "seed": 0})
    ctx = Ctx()
    res = p.run("interpolate", params, ctx)
    assert [r.kind for r in res] == ["points"] * 3
    assert [r.meta["weight"] for r in res] == [0.0, 0.5, 1.0] and [r.meta["index"] for r in res] == [0, 1, 2]
    pts = [r.arrays["points"] for r in res]
    for q in pts:
        assert q.shape == (512, 3) and q.dtype == np.float32 and np.isfinite(q).all()
        assert np.abs(q).max() < 1.6 and np.ptp(q, 0).max() > 0.5   # canonical frame, a shape
    norm = res[0].meta["normalization"]
    assert norm["a"]["scale"] == pytest.approx(3.0, rel=1e-3) and norm["b"]["scale"] == pytest.approx(0.5, rel=0.05)
    # progress: monotone, to the end; previews are sent
    steps = [s for s in ctx.steps if s[0] == "interpolate"]
    assert [s[1] for s in steps] == sorted(s[1] for s in steps) and steps[-1][1] == steps[-1][2] == 80
    assert ctx.previews and ctx.previews[0][1]["points"].shape == (512, 3)
    # the ends resemble their inputs (normalized like the engine does)
    from engine.models.points.inputs import normalize, sample_input
    a = normalize(sample_input({k[2:]: v for k, v in _pair().items() if k.startswith("a_")}, 512, 0))[0]
    b = normalize(sample_input({k[2:]: v for k, v in _pair().items() if k.startswith("b_")}, 512, 0))[0]
    assert _chamfer(pts[0], a) < _chamfer(pts[2], a)
    assert _chamfer(pts[2], b) < _chamfer(pts[0], b)


# ------------------------------------------------------------------------- mesh output

@pytest.fixture
def fake_p2m(monkeypatch):
    """A stand-in ``points_to_mesh`` (convex hull) that records its calls; the wiring is what is tested."""
    calls = []

    def points_to_mesh(points, resolution=64, normals=None, radius=None):
        calls.append((np.asarray(points).copy(), resolution))
        if getattr(points_to_mesh, "fail", None):
            raise points_to_mesh.fail
        hull = trimesh.convex.convex_hull(np.asarray(points, np.float64))
        return np.asarray(hull.vertices, np.float32), np.asarray(hull.faces, np.int64)

    name = "engine.geometry.points_to_mesh"
    if HAVE_P2M:
        import engine.geometry.points_to_mesh as real
        monkeypatch.setattr(real, "points_to_mesh", points_to_mesh)
    else:
        mod = types.ModuleType(name)
        mod.__spec__ = importlib.machinery.ModuleSpec(name, None)
        mod.points_to_mesh = points_to_mesh
        monkeypatch.setitem(sys.modules, name, mod)
    points_to_mesh.calls = calls
    return points_to_mesh


def test_mesh_output_generate_refine_interpolate(tiny_ckpt, fake_p2m):
    p = PointsPipeline(tiny_ckpt)
    res = p.run("generate", p.validate("generate", {"category": "chair", "count": 2, "steps": 2, "n_points": 64,
                                                    "output": "mesh", "mesh_resolution": 40}), Ctx())
    assert [r.kind for r in res] == ["mesh", "mesh"] and [c[1] for c in fake_p2m.calls] == [40, 40]
    for r in res:
        assert r.arrays["vertices"].dtype == np.float32 and r.arrays["faces"].dtype == np.int32
        assert r.meta["output"] == "mesh" and r.meta["mesh_resolution"] == 40
    # refine: reconstructed in the canonical frame, then put back in the object's frame
    box = trimesh.creation.box(extents=(4.0, 2.0, 1.0))
    box.apply_translation((10.0, -5.0, 3.0))
    arrays = {"vertices": np.asarray(box.vertices, np.float32), "faces": np.asarray(box.faces, np.int32)}
    ctx = Ctx()
    res = p.run("refine", p.validate("refine", {"strength": 0.0, "seed": 1, "arrays": arrays, "output": "mesh"}), ctx)
    assert np.abs(fake_p2m.calls[-1][0]).max() < 3.0           # canonical-frame input
    assert np.allclose(res[0].arrays["vertices"].mean(0), (10.0, -5.0, 3.0), atol=1.0)
    assert ("mesh", 1, 1) in ctx.steps
    res = p.run("interpolate", p.validate("interpolate", {"arrays": _pair(), "count": 2, "steps": 2, "n_points": 64,
                                                          "output": "mesh"}), Ctx())
    assert [r.kind for r in res] == ["mesh", "mesh"] and res[1].meta["weight"] == 1.0


def test_mesh_output_failures_are_typed(tiny_ckpt, fake_p2m):
    p = PointsPipeline(tiny_ckpt)
    params = p.validate("generate", {"count": 1, "steps": 1, "n_points": 32, "output": "mesh"})
    fake_p2m.fail = LatentforgeError("no surface", code="mesh.reconstruction_failed")
    with pytest.raises(LatentforgeError) as e:
        p.run("generate", params, Ctx())
    assert e.value.code == "mesh.reconstruction_failed" and e.value.message == "no surface"
    fake_p2m.fail = ValueError("boom")
    with pytest.raises(LatentforgeError) as e:
        p.run("generate", params, Ctx())
    assert e.value.code == "mesh.reconstruction_failed" and "boom" in e.value.message


def test_mesh_output_refused_when_reconstruction_is_missing(tiny_ckpt, monkeypatch):
    real_find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "engine.geometry.points_to_mesh" else real_find(name, *a))
    with pytest.raises(ModelUnavailable, match="points-to-mesh"):
        PointsPipeline(tiny_ckpt).validate("generate", {"output": "mesh"})


@needs_shipped
@pytest.mark.skipif(not HAVE_P2M, reason="engine/geometry/points_to_mesh.py is not installed yet")
def test_shipped_checkpoint_mesh_output_is_watertight():
    p = PointsPipeline()
    res = p.run("generate", p.validate("generate", {"category": p.categories()[0], "steps": 5, "seed": 0,
                                                    "output": "mesh", "mesh_resolution": 48}), Ctx())
    (r,) = res
    mesh = trimesh.Trimesh(r.arrays["vertices"], r.arrays["faces"], process=False)
    assert r.kind == "mesh" and len(mesh.faces) > 100 and mesh.is_watertight
    assert np.abs(mesh.vertices).max() < 1.7


# ------------------------------------------------------------------------------------ CLI

@needs_shipped
def test_cli_interpolate_against_a_running_engine(tmp_path):
    from engine.server.launch import EngineProcess
    from server_harness import short_tmp

    tmp = short_tmp()
    env = dict(os.environ, LATENTFORGE_DATA_DIR=str(tmp / "data"), XDG_RUNTIME_DIR=str(tmp / "xdg"),
               OMP_NUM_THREADS="1")
    env.pop("LATENTFORGE_POINTS_CHECKPOINT", None)
    (tmp / "xdg").mkdir()
    trimesh.creation.box(extents=(2.0, 1.0, 0.4)).export(tmp_path / "a.obj")
    ball = trimesh.creation.icosphere(subdivisions=2)
    trimesh.PointCloud(ball.vertices * 2.0).export(tmp_path / "b.ply")        # a point cloud file
    engine = EngineProcess(["--socket", str(tmp / "s" / "e.sock"), "--data-dir", str(tmp / "data"),
                            "--device", "cpu"], env=env)
    try:
        def lf(*args):
            return subprocess.run([sys.executable, "-m", "engine", *args, "--connect", engine.address], env=env,
                                  capture_output=True, text=True, timeout=300)

        out = tmp_path / "interp"
        proc = lf("interpolate", "--model", "points", "--a", str(tmp_path / "a.obj"), "--b", str(tmp_path / "b.ply"),
                  "--count", "3", "--steps", "5", "--seed", "2", "--param", "n_points=512", "--no-progress",
                  "--out", str(out))
        assert proc.returncode == 0, proc.stderr
        summary = json.loads((out / "summary.json").read_text())
        assert summary["task"] == "interpolate" and len(summary["files"]) == 3
        clouds = [trimesh.load(out / f) for f in summary["files"]]
        assert all(len(c.vertices) == 512 and np.abs(c.vertices).max() < 1.6 for c in clouds)
        # refused before anything runs, with the code on stderr
        proc = lf("interpolate", "--model", "points", "--a", str(tmp_path / "a.obj"), "--b", str(tmp_path / "b.ply"),
                  "--count", "40", "--out", str(tmp_path / "bad"))
        assert proc.returncode == 1 and "request.invalid" in proc.stderr and "'count'" in proc.stderr
        proc = lf("interpolate", "--model", "procedural", "--a", str(tmp_path / "a.obj"), "--b",
                  str(tmp_path / "a.obj"), "--out", str(tmp_path / "bad"))
        assert proc.returncode == 1 and "model.unavailable" in proc.stderr
        if HAVE_P2M:
            proc = lf("interpolate", "--model", "points", "--a", str(tmp_path / "a.obj"), "--b",
                      str(tmp_path / "b.ply"), "--count", "2", "--steps", "3", "--output", "mesh",
                      "--mesh-resolution", "32", "--no-progress", "--out", str(tmp_path / "mesh"))
            assert proc.returncode == 0, proc.stderr
            summary = json.loads((tmp_path / "mesh" / "summary.json").read_text())
            assert [r["kind"] for r in summary["results"]] == ["mesh", "mesh"]
    finally:
        engine.stop()
