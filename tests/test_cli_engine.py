"""`latentforge serve / generate / populate / result / jobs / models` as a user runs them."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
import trimesh

from engine.server.launch import EngineProcess, parse_ready_line
from engine.server.store import content_hash
from server_harness import short_tmp


def _env(tmp) -> dict[str, str]:
    env = dict(os.environ)
    env["LATENTFORGE_DATA_DIR"] = str(tmp / "data")
    env["XDG_RUNTIME_DIR"] = str(tmp / "xdg")
    (tmp / "xdg").mkdir(exist_ok=True)
    return env


def lf(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "engine", *args], env=env, capture_output=True, text=True,
                          timeout=180)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def served():
    tmp = short_tmp()
    env = _env(tmp)
    engine = EngineProcess(["--socket", str(tmp / "s" / "e.sock"), "--data-dir", str(tmp / "data")], env=env)
    yield engine, env, tmp
    engine.stop()


def test_ready_line_parsing():
    assert parse_ready_line("latentforge ready unix:///tmp/x.sock") == ("unix:///tmp/x.sock", None)
    assert parse_ready_line("latentforge ready tcp://127.0.0.1:5 token-file=/a/b") == ("tcp://127.0.0.1:5", "/a/b")


def test_generate_result_jobs_models_against_a_running_engine(served):
    engine, env, tmp = served
    assert engine.address.startswith("unix://")
    out = tmp / "gen"
    lf("generate", "--model", "procedural", "--category", "chair", "--count", "2", "--seed", "3", "--format", "obj",
       "--out", str(out), "--connect", engine.address, env=env)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "procedural" and summary["seed"] == 3 and len(summary["files"]) == 2
    assert set(summary["timings"]) >= {"queue_wait_s", "first_preview_s", "total_s"}
    assert summary["timings"]["first_preview_s"] is not None
    mesh = trimesh.load(out / summary["files"][0], force="mesh")
    assert len(mesh.faces) > 100

    back = tmp / "back"
    lf("result", summary["job_id"], "--out", str(back), "--format", "npz", "--connect", engine.address, env=env)
    again = json.loads((back / "summary.json").read_text())
    for entry, orig in zip(again["results"], summary["results"]):
        with np.load(back / entry["files"][0], allow_pickle=False) as npz:
            assert content_hash({k: npz[k] for k in npz.files}) == orig["sha256"]

    jobs = json.loads(lf("jobs", "--json", "--connect", engine.address, env=env).stdout)["jobs"]
    assert jobs[0]["job_id"] == summary["job_id"] and jobs[0]["state"] == "finished"
    models = json.loads(lf("models", "--json", "--connect", engine.address, env=env).stdout)
    assert models["device"] == "cpu" and models["engine"] == engine.address
    assert {m["name"] for m in models["models"]} == {"procedural", "points", "mesh", "views"}

    bad = lf("generate", "--model", "procedural", "--prompt", "a spaceship", "--out", str(tmp / "bad"),
             "--connect", engine.address, env=env, check=False)
    assert bad.returncode == 1 and "procedural.no_category" in bad.stderr


def test_generate_and_populate_with_a_private_engine():
    tmp = short_tmp()
    env = _env(tmp)
    out = tmp / "pop"
    proc = lf("populate", "--item", "chair=3", "--item", "chair", "--seed", "5", "--format", "glb",
              "--out", str(out), env=env)
    assert "private engine" in proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["results"]) == 4 and all(f.endswith(".glb") for f in summary["files"])
    offsets = {tuple(np.asarray(r["transform"])[:3, 3]) for r in summary["results"]}
    assert len(offsets) == 4  # laid out on a grid
    assert not list((tmp / "xdg" / "latentforge").glob("*.sock"))  # nothing left listening
    # The private engine used the data directory: its history is there.
    assert (tmp / "data" / "engine.sqlite3").exists()


def test_serve_tcp_writes_a_private_token_and_refuses_remote_without_flag():
    tmp = short_tmp()
    env = _env(tmp)
    engine = EngineProcess(["--host", "127.0.0.1", "--data-dir", str(tmp / "data")], env=env)
    try:
        assert engine.address.startswith("tcp://127.0.0.1:") and engine.token_file
        assert stat.S_IMODE(os.stat(engine.token_file).st_mode) == 0o600
        proc = lf("models", "--json", "--connect", engine.address, "--token-file", engine.token_file, env=env)
        assert json.loads(proc.stdout)["engine"] == engine.address
    finally:
        assert engine.stop() == 0
    assert not os.path.exists(engine.token_file)
    proc = lf("serve", "--host", "0.0.0.0", "--data-dir", str(tmp / "data2"), env=env, check=False)
    assert proc.returncode == 1 and "server.remote_not_allowed" in proc.stderr


def test_refine_sends_the_mesh_and_reports_an_unsupported_model(served, meshes_dir):
    engine, env, tmp = served
    proc = lf("refine", "--model", "procedural", "--input", str(meshes_dir / "rabbit.obj"), "--strength", "0.4",
              "--out", str(tmp / "refined"), "--connect", engine.address, env=env, check=False)
    assert proc.returncode == 1 and "model.unavailable" in proc.stderr and "refine" in proc.stderr


def test_prune_command_applies_the_policy(tmp_path, capsys):
    import argparse

    from engine.server.cli import cmd_prune, prune_policy
    from engine.server.store import Store

    store = Store(tmp_path)
    store.add_job("old", {"task": "generate", "model": "procedural", "params": {}})
    store.add_result("old", 0, "points", {"points": np.zeros((10, 3), np.float32)}, {})
    store.set_state("old", "finished")
    store.close()
    (tmp_path / "settings.json").write_text(json.dumps({"max_results_gb": 0, "max_age_days": 30}))
    args = argparse.Namespace(data_dir=tmp_path, max_results_gb=None, max_age_days=None)
    assert prune_policy(args, tmp_path) == (None, 30 * 86400.0)
    args.max_age_days = 1e-9  # flags win over settings.json
    assert cmd_prune(args) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["pruned_jobs"] == 1 and stats["removed_files"] == 1


def test_export_writes_every_kind_and_refuses_what_a_format_cannot_hold(tmp_path):
    from PIL import Image

    from engine.server.export import UnsupportedFormat, write_result

    box = trimesh.creation.box()
    mesh = {"vertices": box.vertices.astype(np.float32), "faces": box.faces.astype(np.int32),
            "normals": box.vertex_normals.astype(np.float32)}
    for fmt in ("ply", "obj", "glb"):
        (path,) = write_result(tmp_path, 0, "mesh", mesh, {"category": "chair"}, fmt)
        assert path.name == f"chair_000.{fmt}"
        assert len(trimesh.load(path, force="mesh").faces) == 12
    (path,) = write_result(tmp_path, 1, "mesh", mesh, {}, "npz")
    with np.load(path, allow_pickle=False) as npz:
        assert npz["faces"].tobytes() == mesh["faces"].tobytes()
    pts = {"points": np.random.default_rng(0).standard_normal((100, 3)).astype(np.float32)}
    (path,) = write_result(tmp_path, 2, "points", pts, {"category": "a/b c"}, "ply")
    assert path.name == "a_b_c_002.ply" and len(trimesh.load(path).vertices) == 100
    with pytest.raises(UnsupportedFormat):
        write_result(tmp_path, 2, "points", pts, {}, "glb")
    images = {"images": np.zeros((2, 8, 8, 4), np.uint8), "poses": np.tile(np.eye(4, dtype=np.float32), (2, 1, 1))}
    paths = write_result(tmp_path, 3, "images", images, {}, "ply")
    assert [p.suffix for p in paths] == [".png", ".png", ".npz"]
    assert Image.open(paths[0]).size == (8, 8)
