"""The add-on in real headless Blender (bpy 5.0.1) against a real engine subprocess.

One Blender session and one extension install per module; the engine is started from the
add-on's preferences like a user would. Headless Blender runs no event loop, so timers
never fire by themselves: ``run_timers`` calls the add-on's registered timer function in
a loop (it checks the function really is the one registered with ``bpy.app.timers``).

Blender's user folders go to a temporary directory (``BLENDER_USER_RESOURCES``, set
before bpy is imported), so no user configuration is touched.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
_USER_DIR = tempfile.mkdtemp(prefix="lf-blender-user-")
if "bpy" not in sys.modules:
    os.environ["BLENDER_USER_RESOURCES"] = _USER_DIR

bpy = pytest.importorskip("bpy")

pytestmark = pytest.mark.blender
MODULE = "bl_ext.user_default.latentforge"
TEST_PIPELINES = ("test_addon_pipelines:SmoothRefinePipeline,test_addon_pipelines:RenderViewsPipeline,"
                  "server_slow_pipeline:SlowPipeline")


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


POINTS_CKPT_ENV = "LATENTFORGE_POINTS_CHECKPOINT"  # engine/pipelines/points.py CHECKPOINT_ENV

# ------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def ext_zip(tmp_path_factory) -> Path:
    """The extension built by scripts/build_extension.py (Blender's own builder)."""
    build = _load_script("build_extension")
    summary = build.build(tmp_path_factory.mktemp("dist"), stage_dir=tmp_path_factory.mktemp("stage"))
    return Path(summary["zip"])


@pytest.fixture(scope="module")
def lf(ext_zip):
    """The installed and enabled add-on package."""
    if not bpy.utils.resource_path("USER").startswith(_USER_DIR):
        pytest.skip("bpy was imported before this module could point Blender's user folder at a temp dir")
    result = bpy.ops.extensions.package_install_files(filepath=str(ext_zip), repo="user_default",
                                                      enable_on_install=True)
    assert result == {"FINISHED"}
    module = sys.modules[MODULE]
    yield module
    module.engine_bridge.BRIDGE.stop()
    run_timers(module, lambda: not module.engine_bridge.BRIDGE.busy, timeout=30)


@pytest.fixture(scope="module")
def bridge(lf, tmp_path_factory):
    """An engine started from the preferences, with no learned model installed.

    The points checkpoint is pointed at an empty folder so the "no model can refine"
    states are tested whether or not a checkpoint ships; ``plugged`` brings it back.
    """
    os.environ.pop("LATENTFORGE_EXTRA_PIPELINES", None)
    saved_ckpt = os.environ.get(POINTS_CKPT_ENV)
    os.environ[POINTS_CKPT_ENV] = str(tmp_path_factory.mktemp("no-points-checkpoint"))
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.mode = "LOCAL"
    prefs.python_path = sys.executable
    prefs.data_dir = str(tmp_path_factory.mktemp("engine-data"))
    b = lf.engine_bridge.BRIDGE
    assert bpy.ops.latentforge.engine_start() == {"FINISHED"}
    assert run_timers(lf, lambda: b.state in ("connected", "error"), timeout=120), b.state
    assert b.state == "connected", b.problem
    yield b
    # later test modules (in this pytest process) must see the shipped checkpoint again
    if saved_ckpt is None:
        os.environ.pop(POINTS_CKPT_ENV, None)
    else:
        os.environ[POINTS_CKPT_ENV] = saved_ckpt


@pytest.fixture(scope="module")
def plugged(lf, bridge):
    """Restart the engine (Restart button) with the refine/views test pipelines plugged in
    and the shipped points checkpoint (if any) installed."""
    saved = {k: os.environ.get(k) for k in ("LATENTFORGE_EXTRA_PIPELINES", "PYTHONPATH", POINTS_CKPT_ENV)}
    os.environ["LATENTFORGE_EXTRA_PIPELINES"] = TEST_PIPELINES
    os.environ.pop(POINTS_CKPT_ENV, None)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "tests"), saved["PYTHONPATH"]]))
    assert bpy.ops.latentforge.engine_start(restart=True) == {"FINISHED"}
    assert run_timers(lf, lambda: bridge.state == "connected" and not bridge.busy
                      and any(m["name"] == "smooth_test" for m in bridge.models), 120), bridge.problem
    yield bridge
    for key, value in saved.items():  # other modules' engines must not see the test pipelines
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def run_timers(lf, until, timeout: float = 60.0, every=None) -> bool:
    """Call the registered timer function until ``until()`` is true; False on timeout."""
    assert bpy.app.timers.is_registered(lf.engine_bridge.tick)
    return lf.engine_bridge.run_until(until, timeout, every)


def wait_jobs(lf, bridge, jobs, timeout=120.0, every=None):
    ok = run_timers(lf, lambda: all(j.state in ("finished", "failed", "cancelled") for j in jobs), timeout, every)
    assert ok, [(j.label, j.state) for j in jobs]


def new_jobs(bridge, before: set) -> list:
    return [j for j in bridge.jobs.all() if j.key not in before]


def preview_objects(lf) -> list:
    prop = lf.scene_builders.PREVIEW_PROP
    return [o for o in bpy.data.objects if prop in o.keys()]


def job_objects(job) -> list:
    return [bpy.data.objects[n] for n in job.objects if n in bpy.data.objects]


def select_only(*objects) -> None:
    for o in bpy.context.view_layer.objects:
        o.select_set(False)
    for o in objects:
        o.select_set(True)
    bpy.context.view_layer.objects.active = objects[0] if objects else None


# ------------------------------------------------------------------------------ packaging

def test_zip_is_a_valid_extension(ext_zip):
    with zipfile.ZipFile(ext_zip) as zf:
        names = set(zf.namelist())
        sources = {n: zf.read(n).decode() for n in names if n.endswith(".py")}
    assert {"__init__.py", "blender_manifest.toml", "_link/protocol.py", "_link/client.py",
            "_link/errors.py"} <= names
    # one source: the shipped protocol is the engine's file, byte for byte
    assert sources["_link/protocol.py"] == (REPO / "engine" / "protocol.py").read_text()
    for name, text in sources.items():
        for line in text.splitlines():
            stripped = line.strip()
            assert not stripped.startswith(("import torch", "from torch", "import engine", "from engine")), (name, line)
    tool = _load_script("build_extension").find_blender_ext()
    proc = subprocess.run([sys.executable, str(tool), "validate", str(ext_zip)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_installed_enabled_and_registered(lf):
    assert MODULE in bpy.context.preferences.addons
    for op in ("generate", "refine", "interpolate", "views", "populate", "cancel_job", "reimport", "engine_start"):
        assert hasattr(bpy.ops.latentforge, op)
    assert hasattr(bpy.types, "LATENTFORGE_PT_main")
    assert bpy.types.LATENTFORGE_PT_main.bl_category == "Latentforge"
    assert hasattr(bpy.context.scene, "latentforge")
    assert bpy.app.timers.is_registered(lf.engine_bridge.tick)


# --------------------------------------------------------------------------- scene builders

def test_builders_reject_bad_arrays_without_leftovers(lf):
    sb = lf.scene_builders
    meshes, clouds = len(bpy.data.meshes), len(bpy.data.pointclouds)
    v = np.random.default_rng(0).random((10, 3)).astype(np.float32)
    with pytest.raises(sb.BadArrays):
        sb.build_mesh("bad", v, np.array([[0, 1, 99]]))
    with pytest.raises(sb.BadArrays):
        sb.build_mesh("bad", np.full((3, 3), np.nan, np.float32), np.array([[0, 1, 2]]))
    with pytest.raises(sb.BadArrays):
        sb.build_points("bad", np.zeros((0, 3), np.float32))
    assert (len(bpy.data.meshes), len(bpy.data.pointclouds)) == (meshes, clouds)


def test_builders_points_update_in_place_and_images(lf):
    sb = lf.scene_builders
    coll = bpy.context.scene.collection
    pts = np.random.default_rng(1).random((500, 3)).astype(np.float32)
    data = sb.build_points("pts", pts)
    obj = sb.new_points_object("pts", data, coll)
    assert obj.type == "POINTCLOUD" and len(obj.data.points) == 500
    got = np.empty(1500, np.float32)
    obj.data.attributes["position"].data.foreach_get("vector", got)
    np.testing.assert_allclose(got.reshape(-1, 3), pts)
    assert sb.update_points_in_place(obj, pts * 2)
    assert obj.data == data  # same datablock, moved in place
    assert not sb.update_points_in_place(obj, pts[:10])
    rgba = np.random.default_rng(2).integers(0, 256, (6, 8, 4), dtype=np.uint8)
    img = sb.build_image("img", rgba)
    assert tuple(img.size) == (8, 6)
    np.testing.assert_array_equal(sb.image_pixels(img), rgba)
    sb.remove_objects([obj])
    sb.remove_data(img)
    assert "pts" not in bpy.data.pointclouds


# ---------------------------------------------------------------------------- engine + jobs

def test_engine_started_from_preferences(lf, bridge):
    icon, text = bridge.status_line()
    assert text.startswith("Connected") and "cpu" in text
    assert bridge.process.running and bridge.owns_process
    names = {m["name"]: m for m in bridge.models}
    assert names["procedural"]["available"]
    assert not names["views"]["available"] and names["views"]["reason"]


def test_generate_procedural_at_cursor(lf, bridge):
    scene = bpy.context.scene
    scene.cursor.location = (1.0, 2.0, 0.5)
    s = scene.latentforge.generate
    s.model = "procedural"
    s.input_mode = "CATEGORY"
    s.category = "chair"  # procedural reports its categories: the panel and operator use this list
    s.count = 3
    s.spacing = 2.5
    s.randomize_seed = False
    s.seed = 1234
    before = {j.key for j in bridge.jobs.all()}
    bridge.tick_stats.reset()
    assert bpy.ops.latentforge.generate() == {"FINISHED"}
    (job,) = new_jobs(bridge, before)
    wait_jobs(lf, bridge, [job])
    assert job.state == "finished", job.error
    objs = job_objects(job)
    assert len(objs) == 3
    xs = sorted(o.location.x for o in objs)
    assert xs == pytest.approx([1.0 - 2.5, 1.0, 1.0 + 2.5], abs=1e-5)
    for o in objs:
        assert o.location.y == pytest.approx(2.0) and o.location.z == pytest.approx(0.5)
        assert o.type == "MESH" and len(o.data.polygons) > 0
        assert not o.data.validate(verbose=False), f"{o.name}: validate() had something to fix"
        assert o["latentforge_job_id"] == job.job_id
        assert o["latentforge_model"] == "procedural"
        assert o["latentforge_category"] == "chair"
        assert o["latentforge_seed"] in (1234, 1235, 1236)
        assert json.loads(o["latentforge_params"])["category"] == "chair"
        assert o.users_collection[0].name == job.collection
    assert {o["latentforge_seed"] for o in objs} == {1234, 1235, 1236}
    assert not preview_objects(lf)
    print("tick stats (generate):", json.dumps(bridge.tick_stats.summary()))


def test_views_unavailable_shows_reason_and_engine_refuses(lf, bridge):
    views = next(m for m in bridge.models if m["name"] == "views")
    assert not views["available"] and views["reason"]
    # the panel's section shows the engine's reasons (no installed model can make views)
    reason = bridge.task_unavailable_reason("views")
    assert views["reason"] in reason and "procedural" in reason
    cube = bpy.data.objects["Cube"]
    select_only(cube)
    n_jobs, n_objects = len(bridge.jobs), len(bpy.data.objects)
    with pytest.raises(RuntimeError, match="No installed model can make novel views"):
        bpy.ops.latentforge.views()
    assert len(bridge.jobs) == n_jobs
    # and the engine itself answers a views request with a clear error
    spec = {"task": "views", "model": "views", "params": {"poses": [[1.0, 0.0, 3.0]]}, "priority": 0}
    vertices, faces = lf.scene_builders.mesh_arrays(cube)
    job = bridge.submit(lf.jobs.Job("views", spec, "views: cube", context={"source": "Cube"}),
                        {"vertices": vertices, "faces": faces})
    wait_jobs(lf, bridge, [job])
    assert job.state == "failed"
    assert job.error["code"] == "model.unavailable"
    assert views["reason"] in job.error["message"]
    assert bridge.last_error["code"] == "model.unavailable"
    assert len(bpy.data.objects) == n_objects and not preview_objects(lf)


def test_refine_unavailable_for_procedural(lf, bridge):
    procedural = next(m for m in bridge.models if m["name"] == "procedural")
    why = procedural["tasks"]["refine"]["reason"]
    assert not procedural["tasks"]["refine"]["available"] and why
    assert why in bridge.task_unavailable_reason("refine")
    cube = bpy.data.objects["Cube"]
    select_only(cube)
    with pytest.raises(RuntimeError, match="No installed model can refine"):
        bpy.ops.latentforge.refine()
    vertices, faces = lf.scene_builders.mesh_arrays(cube)
    spec = {"task": "refine", "model": "procedural", "params": {"strength": 0.5}, "priority": 0}
    job = bridge.submit(lf.jobs.Job("refine", spec, "refine cube", context={"source": "Cube", "mode": "HIDE"}),
                        {"vertices": vertices, "faces": faces})
    wait_jobs(lf, bridge, [job])
    assert job.state == "failed" and job.error["code"] == "model.unavailable"
    assert "cannot refine" in job.error["message"]
    assert cube.name == "Cube" and cube.visible_get()


def test_refine_rejects_object_without_faces(lf, bridge):
    mesh = bpy.data.meshes.new("verts only")
    mesh.vertices.add(3)
    obj = bpy.data.objects.new("verts only", mesh)
    bpy.context.scene.collection.objects.link(obj)
    select_only(obj)
    n_jobs = len(bridge.jobs)
    with pytest.raises(RuntimeError, match="no faces"):
        bpy.ops.latentforge.refine()
    assert len(bridge.jobs) == n_jobs  # nothing was sent
    bpy.data.objects.remove(obj)
    bpy.data.meshes.remove(mesh)


def test_generate_from_image_is_refused_clearly(lf, bridge, tmp_path):
    s = bpy.context.scene.latentforge.generate
    s.model, s.input_mode, s.count = "procedural", "IMAGE", 1
    s.image_path = str(tmp_path / "missing.png")
    n_jobs, n_objects = len(bridge.jobs), len(bpy.data.objects)
    with pytest.raises(RuntimeError, match="Image file not found"):
        bpy.ops.latentforge.generate()
    assert len(bridge.jobs) == n_jobs
    img = bpy.data.images.new("prompt", 16, 16, alpha=True)
    img.filepath_raw, img.file_format = str(tmp_path / "prompt.png"), "PNG"
    img.save()
    bpy.data.images.remove(img)
    s.image_path = str(tmp_path / "prompt.png")
    before = {j.key for j in bridge.jobs.all()}
    assert bpy.ops.latentforge.generate() == {"FINISHED"}
    (job,) = new_jobs(bridge, before)
    wait_jobs(lf, bridge, [job])
    assert job.state == "failed" and job.error["code"] == "model.unavailable"
    assert "image" in job.error["message"]
    assert len(bpy.data.objects) == n_objects and "prompt.png" not in bpy.data.images
    s.input_mode = "CATEGORY"


def test_panels_and_preferences_draw(lf, bridge):
    s = bpy.context.scene.latentforge
    s.views.preset = "CUSTOM"
    bpy.ops.latentforge.view_pose_add()
    bpy.ops.latentforge.populate_row_add()
    log = _draw_everything(lf)
    labels = [t for kind, t in log if kind == "label"]
    assert any(t.startswith("Connected") for t in labels)
    assert ("operator", "latentforge.generate") in log and ("operator", "latentforge.populate") in log
    assert labels.count("Unavailable") == 3  # refine, interpolate and views show the engine's reasons
    assert any("not trained" in t for t in labels)
    s.views.preset = "ORBIT_4"


def test_refine_keeps_transform_name_materials_collection(lf, plugged):
    bridge = plugged
    bpy.ops.mesh.primitive_ico_sphere_add(subdivisions=3, radius=1.0, location=(3.0, -2.0, 1.0),
                                          rotation=(0.3, 0.2, 1.1), scale=(1.5, 1.0, 0.5))
    a = bpy.context.active_object
    a.name = "Rock"
    mat = bpy.data.materials.new("Stone")
    a.data.materials.append(mat)
    coll = bpy.data.collections.new("Props")
    bpy.context.scene.collection.children.link(coll)
    for c in list(a.users_collection):
        c.objects.unlink(a)
    coll.objects.link(a)
    bpy.ops.mesh.primitive_cube_add(location=(-3.0, 0.0, 0.0))
    b = bpy.context.active_object
    b.name = "Box"
    matrices = {"Rock": a.matrix_world.copy(), "Box": b.matrix_world.copy()}
    select_only(a, b)
    s = bpy.context.scene.latentforge.refine
    s.model = "smooth_test"
    s.strength = 0.4
    s.mode = "HIDE"
    before = {j.key for j in bridge.jobs.all()}
    seen_preview = []
    assert bpy.ops.latentforge.refine() == {"FINISHED"}
    jobs = new_jobs(bridge, before)
    assert len(jobs) == 2
    wait_jobs(lf, bridge, jobs, every=lambda: seen_preview.append(len(preview_objects(lf))))
    assert all(j.state == "finished" for j in jobs), [j.error for j in jobs]
    assert max(seen_preview) >= 1  # the live preview was shown while the job ran...
    bpy.context.view_layer.update()
    for name in ("Rock", "Box"):
        new = bpy.data.objects[name]
        old = bpy.data.objects[f"{name} (original)"]
        assert new["latentforge_model"] == "smooth_test" and new["latentforge_task"] == "refine"
        assert new.parent == old.parent and new.rotation_mode == old.rotation_mode
        assert tuple(new.location) == tuple(old.location) and tuple(new.scale) == tuple(old.scale)
        assert tuple(new.rotation_euler) == tuple(old.rotation_euler)
        np.testing.assert_allclose(np.array(new.matrix_world), np.array(matrices[name]), atol=1e-6)
        assert not old.visible_get() and old.hide_render and new.visible_get()
        assert new.data is not old.data and not new.data.validate(verbose=False)
        old.data.calc_loop_triangles()
        assert len(new.data.polygons) == len(old.data.loop_triangles)  # the engine works on triangles
        assert {c.name for c in new.users_collection} == {c.name for c in old.users_collection}
    assert bpy.data.objects["Rock"].data.materials[0] == mat
    assert bpy.data.objects["Rock"].users_collection[0].name == "Props"
    assert not preview_objects(lf)  # ...and replaced by the final object
    # replace mode removes the original
    c = bpy.data.objects["Box"]
    select_only(c)
    s.mode = "REPLACE"
    before = {j.key for j in bridge.jobs.all()}
    assert bpy.ops.latentforge.refine() == {"FINISHED"}
    jobs = new_jobs(bridge, before)
    wait_jobs(lf, bridge, jobs)
    assert jobs[0].state == "finished"
    with pytest.raises(ReferenceError):
        c.name  # the replaced object is gone
    assert sorted(o.name for o in bpy.data.objects if o.name.startswith("Box")) == ["Box", "Box (original)"]


def test_live_preview_updates_in_place_while_streaming(lf, plugged):
    """A slow job streams previews (5 per second): one preview object, moved in place, then replaced."""
    bridge = plugged
    spec = {"task": "generate", "model": "slow", "priority": 0,
            "params": {"steps": 30, "delay": 0.05, "n_points": 2048, "count": 1}}
    job = bridge.submit(lf.jobs.Job("generate", spec, "slow: stream", context={"cursor": (0.0, 0.0, 0.0)}))
    bridge.tick_stats.reset()
    seen = []

    def watch():
        for o in preview_objects(lf):
            pos = np.empty(len(o.data.attributes["position"].data) * 3, np.float32)
            o.data.attributes["position"].data.foreach_get("vector", pos)
            seen.append((o.name, o.data.name, hash(pos.tobytes())))

    wait_jobs(lf, bridge, [job], timeout=60, every=watch)
    assert job.state == "finished", job.error
    assert len({h for _, _, h in seen}) >= 3  # the points moved several times...
    assert len({(n, d) for n, d, _ in seen}) == 1  # ...in one object and one datablock
    assert not preview_objects(lf) and len(job_objects(job)) == 1
    stats = bridge.tick_stats.summary()
    print("tick stats while streaming previews:", json.dumps(stats))
    assert stats["preview"]["ticks"] >= 3


def test_final_insertion_is_one_undo_step(lf, plugged):
    bridge = plugged
    bpy.ops.ed.undo_push(message="before the job")
    names_before = {o.name for o in bpy.data.objects}
    spec = {"task": "generate", "model": "slow", "priority": 0,
            "params": {"steps": 12, "delay": 0.05, "n_points": 512, "count": 2}}
    job = bridge.submit(lf.jobs.Job("generate", spec, "slow: undo", context={"cursor": (0.0, -6.0, 0.0)}))
    had_preview = []
    wait_jobs(lf, bridge, [job], timeout=60, every=lambda: had_preview.append(bool(preview_objects(lf))))
    assert job.state == "finished" and any(had_preview)
    created = set(job.objects)
    assert len(created) == 2 and {o.name for o in bpy.data.objects} == names_before | created
    assert bpy.ops.ed.undo() == {"FINISHED"}  # one step takes the whole insertion back...
    assert {o.name for o in bpy.data.objects} == names_before  # ...and no preview reappears
    assert bpy.ops.ed.redo() == {"FINISHED"}
    assert {o.name for o in bpy.data.objects} == names_before | created


def test_views_from_object_planes_and_cameras(lf, plugged):
    bridge = plugged
    rock = bpy.data.objects["Rock"]
    select_only(rock)
    s = bpy.context.scene.latentforge.views
    s.model = "render_views_test"
    s.source = "OBJECT"
    s.preset = "ORBIT_4"
    s.radius = 3.0
    before = {j.key for j in bridge.jobs.all()}
    assert bpy.ops.latentforge.views() == {"FINISHED"}
    (job,) = new_jobs(bridge, before)
    wait_jobs(lf, bridge, [job])
    assert job.state == "finished", job.error
    objs = job_objects(job)
    cams = [o for o in objs if o.type == "CAMERA"]
    planes = [o for o in objs if o.type == "MESH"]
    assert len(cams) == 4 and len(planes) == 4
    for cam in cams:
        # each camera sits at its pose relative to the object, looking at the object's origin
        to_obj = (rock.matrix_world.translation - cam.matrix_world.translation).normalized()
        view_dir = -cam.matrix_world.col[2].xyz.normalized()
        assert view_dir.dot(to_obj) > 0.99
    for plane in planes:
        img = plane.data.materials[0].node_tree.nodes.active.image
        assert img.packed_file is not None and tuple(img.size) == (48, 48)
        assert plane["latentforge_view"] in range(4)


def test_points_model_generate_and_refine(lf, plugged):
    bridge = plugged
    points = next(m for m in bridge.models if m["name"] == "points")
    if not points["available"]:
        pytest.skip(f"the learned points model is not installed: {points['reason']}")
    s = bpy.context.scene.latentforge.generate
    s.model, s.input_mode, s.count, s.randomize_seed = "points", "CATEGORY", 2, True
    if points.get("categories"):
        s.category = points["categories"][0]
    else:
        s.category_text = "chair"
    before = {j.key for j in bridge.jobs.all()}
    seen_preview = []
    assert bpy.ops.latentforge.generate() == {"FINISHED"}
    (job,) = new_jobs(bridge, before)
    wait_jobs(lf, bridge, [job], timeout=300, every=lambda: seen_preview.append(len(preview_objects(lf))))
    assert job.state == "finished", job.error
    objs = job_objects(job)
    assert len(objs) == 2 and all(o.type == "POINTCLOUD" and len(o.data.points) > 0 for o in objs)
    assert all(o["latentforge_model"] == "points" for o in objs)
    assert max(seen_preview) >= 1 and not preview_objects(lf)
    # no custom guidance: the model's own default is used and recorded on the objects
    assert "guidance" not in job.spec["params"]
    ckpt_cfg = json.loads((REPO / "engine" / "checkpoints" / "points" / "config.json").read_text())
    assert objs[0]["latentforge_guidance"] == pytest.approx(ckpt_cfg["diffusion"].get("guidance", 1.5))
    # refine (SDEdit) of a mesh object: a point cloud in its place, same transform
    bpy.ops.mesh.primitive_uv_sphere_add(location=(0.0, 8.0, 1.0), scale=(1.0, 0.6, 1.4))
    ball = bpy.context.active_object
    ball.name = "Ball"
    select_only(ball)
    r = bpy.context.scene.latentforge.refine
    r.model, r.strength, r.mode = "points", 0.3, "HIDE"
    before = {j.key for j in bridge.jobs.all()}
    assert bpy.ops.latentforge.refine() == {"FINISHED"}
    (job,) = new_jobs(bridge, before)
    wait_jobs(lf, bridge, [job], timeout=300)
    assert job.state == "finished", job.error
    new = bpy.data.objects["Ball"]
    assert new.type == "POINTCLOUD" and tuple(new.location) == (0.0, 8.0, 1.0)
    assert not bpy.data.objects["Ball (original)"].visible_get()


def test_points_model_interpolate_between_two_objects_and_mesh_output(lf, plugged):
    bridge = plugged
    points = next(m for m in bridge.models if m["name"] == "points")
    if not points["available"] or not points["tasks"]["interpolate"]["available"]:
        pytest.skip(f"the learned points model cannot interpolate here: {points['reason']}")
    bpy.ops.mesh.primitive_cube_add(size=2.0, location=(-4.0, 20.0, 0.0))
    cube = bpy.context.active_object
    bpy.ops.mesh.primitive_uv_sphere_add(radius=0.5, location=(4.0, 20.0, 0.0))
    ball = bpy.context.active_object
    select_only(cube)
    with pytest.raises(RuntimeError, match="exactly two"):
        bpy.ops.latentforge.interpolate()
    select_only(ball, cube)  # active first: the sphere is the end shape (B)
    s = bpy.context.scene.latentforge.interpolate
    s.model, s.count, s.steps, s.output = "points", 3, 4, "POINTS"
    bpy.ops.ed.undo_push(message="before interpolate")
    names_before = {o.name for o in bpy.data.objects}
    before = {j.key for j in bridge.jobs.all()}
    assert bpy.ops.latentforge.interpolate() == {"FINISHED"}
    (job,) = new_jobs(bridge, before)
    assert job.spec["task"] == "interpolate" and job.context["source_a"] == cube.name
    wait_jobs(lf, bridge, [job], timeout=300)
    assert job.state == "finished", job.error
    objs = sorted(job_objects(job), key=lambda o: o["latentforge_index"])
    assert len(objs) == 3 and all(o.type == "POINTCLOUD" and len(o.data.points) > 0 for o in objs)
    # in a row strictly between the two objects, sized from the cube's (1) to the sphere's (0.5)
    assert [tuple(round(c, 4) for c in o.location) for o in objs] == [(-2.0, 20.0, 0.0), (0.0, 20.0, 0.0),
                                                                      (2.0, 20.0, 0.0)]
    assert [round(o.scale[0], 3) for o in objs] == [1.0, 0.75, 0.5]
    assert [o["latentforge_weight"] for o in objs] == [0.0, 0.5, 1.0] and not preview_objects(lf)
    assert bpy.ops.ed.undo() == {"FINISHED"}   # one undo step takes all three back
    assert {o.name for o in bpy.data.objects} == names_before
    assert bpy.ops.ed.redo() == {"FINISHED"}
    # Output: Mesh (engine-side reconstruction) for the points model's generate
    g = bpy.context.scene.latentforge.generate
    g.model, g.input_mode, g.count, g.steps, g.output, g.mesh_resolution = "points", "CATEGORY", 1, 4, "MESH", 32
    if points.get("categories"):
        g.category = points["categories"][0]
    before = {j.key for j in bridge.jobs.all()}
    assert bpy.ops.latentforge.generate() == {"FINISHED"}
    (job,) = new_jobs(bridge, before)
    assert job.spec["params"]["output"] == "mesh"
    wait_jobs(lf, bridge, [job], timeout=300)
    assert job.state == "finished", job.error
    (obj,) = job_objects(job)
    assert obj.type == "MESH" and len(obj.data.polygons) > 100
    g.output = "POINTS"


def test_populate_rows_without_overlap_and_linked_duplicates(lf, bridge):
    scene = bpy.context.scene
    scene.cursor.location = (20.0, 0.0, 0.0)
    p = scene.latentforge.populate
    p.model = "procedural"
    p.rows.clear()
    r = p.rows.add()
    r.input_mode, r.category, r.count, r.variants = "CATEGORY", "chair", 3, 1
    r = p.rows.add()
    r.input_mode, r.category, r.count, r.variants = "CATEGORY", "table", 2, 2
    p.target, p.radius, p.spacing = "CURSOR", 4.0, 0.2
    p.rotate, p.scale_min, p.scale_max = True, 0.7, 1.1
    p.randomize_seed, p.seed = False, 77
    before = {j.key for j in bridge.jobs.all()}
    assert bpy.ops.latentforge.populate() == {"FINISHED"}
    jobs = new_jobs(bridge, before)
    assert len(jobs) == 2
    wait_jobs(lf, bridge, jobs)
    assert all(j.state == "finished" for j in jobs), [j.error for j in jobs]
    objs = [o for j in jobs for o in job_objects(j)]
    assert len(objs) == 5
    chairs = [o for o in objs if o["latentforge_category"] == "chair"]
    tables = [o for o in objs if o["latentforge_category"] == "table"]
    assert len(chairs) == 3 and len({o.data.name for o in chairs}) == 1  # linked duplicates
    assert len(tables) == 2 and len({o.data.name for o in tables}) == 2
    boxes = [lf.scene_builders.world_bounds(o) for o in objs]
    assert not lf.placement.boxes_overlap(boxes)
    for (lo, hi), o in zip(boxes, objs):
        assert lo[2] == pytest.approx(0.0, abs=1e-4)  # standing on the cursor's plane
        assert 0.7 - 1e-6 <= o.scale.x <= 1.1 + 1e-6
        assert not o.data.validate(verbose=False)
    assert len({o.users_collection[0].name for o in objs}) == 1
    assert not preview_objects(lf)
    # on the surface of a selected object: a raised platform
    bpy.ops.mesh.primitive_plane_add(size=8.0, location=(-20.0, 0.0, 2.0))
    platform = bpy.context.active_object
    select_only(platform)
    p.rows.clear()
    r = p.rows.add()
    r.input_mode, r.category, r.count, r.variants = "CATEGORY", "vase", 3, 1
    p.target, p.rotate = "SURFACE", False
    before = {j.key for j in bridge.jobs.all()}
    assert bpy.ops.latentforge.populate() == {"FINISHED"}
    jobs = new_jobs(bridge, before)
    wait_jobs(lf, bridge, jobs)
    objs = job_objects(jobs[0])
    assert len(objs) == 3
    boxes = [lf.scene_builders.world_bounds(o) for o in objs]
    assert not lf.placement.boxes_overlap(boxes)
    for lo, hi in boxes:
        assert lo[2] == pytest.approx(2.0, abs=1e-4)
    for o in objs:
        assert -24.0 <= o.location.x <= -16.0 and -4.0 <= o.location.y <= 4.0


def test_cancel_removes_preview_and_leaves_nothing(lf, bridge):
    s = bpy.context.scene.latentforge.generate
    s.model, s.input_mode, s.category_text, s.count = "procedural", "CATEGORY", "chair", 64
    before = {j.key for j in bridge.jobs.all()}
    n_objects = len(bpy.data.objects) - len(preview_objects(lf))
    assert bpy.ops.latentforge.generate() == {"FINISHED"}
    (job,) = new_jobs(bridge, before)
    assert run_timers(lf, lambda: job.preview is not None or job.state != "submitting" and job.step > 0, 60)
    assert bpy.ops.latentforge.cancel_job(key=job.key) == {"FINISHED"}
    wait_jobs(lf, bridge, [job])
    assert job.state == "cancelled"
    assert not preview_objects(lf)
    assert len(bpy.data.objects) == n_objects
    assert job.collection is None or job.collection not in bpy.data.collections


def test_kill_engine_mid_job_then_restart_and_reimport(lf, bridge):
    finished = [j for j in bridge.jobs.all() if j.state == "finished" and j.purpose == "generate"]
    assert finished
    s = bpy.context.scene.latentforge.generate
    s.model, s.category_text, s.count = "procedural", "table", 64
    before = {j.key for j in bridge.jobs.all()}
    n_objects = len(bpy.data.objects)
    assert bpy.ops.latentforge.generate() == {"FINISHED"}
    (job,) = new_jobs(bridge, before)
    assert run_timers(lf, lambda: job.state == "running", 60)
    old_pid = bridge.process.pid
    errors_before = len([m for m in bridge.messages if m["level"] == "ERROR"])
    os.kill(old_pid, signal.SIGKILL)  # a crash, not a shutdown
    assert run_timers(lf, lambda: len([m for m in bridge.messages if m["level"] == "ERROR"]) > errors_before, 30)
    assert job.state in ("lost", "failed")
    assert not preview_objects(lf) and len(bpy.data.objects) == n_objects
    # "Restart After Crash" brings it back on its own; the interrupted job ends as failed
    assert run_timers(lf, lambda: bridge.state == "connected" and bridge.process.pid not in (None, old_pid), 120)
    assert run_timers(lf, lambda: job.state == "failed", 60), job.state
    assert job.error["code"] == "job.interrupted"
    assert len(bpy.data.objects) == n_objects
    # the history survived the crash; a finished job re-imports
    bridge.history = []
    assert bpy.ops.latentforge.refresh_history() == {"FINISHED"}
    assert run_timers(lf, lambda: bool(bridge.history), 30)
    target = finished[-1]
    entry = next(h for h in bridge.history if h["job_id"] == target.job_id)
    assert entry["state"] == "finished"
    before = {j.key for j in bridge.jobs.all()}
    assert bpy.ops.latentforge.reimport(job_id=target.job_id) == {"FINISHED"}
    (re_job,) = new_jobs(bridge, before)
    wait_jobs(lf, bridge, [re_job])
    assert re_job.state == "finished", re_job.error
    again = job_objects(re_job)
    assert len(again) == len(target.objects)
    assert {o["latentforge_job_id"] for o in again} == {target.job_id}
    for o in again:
        assert not o.data.validate(verbose=False)


def test_status_line_reports_version_mismatch(lf, bridge):
    from importlib import import_module

    protocol = import_module(MODULE + "._link.protocol")
    saved = (bridge.state, bridge.problem)
    exc = protocol.VersionMismatch("The engine speaks protocol version 2; this add-on speaks 1.")
    bridge._on_worker_error("_w_connect", exc, "")
    icon, text = bridge.status_line()
    assert icon == "ERROR" and "version 2" in text
    assert "same Latentforge release" in bridge.problem["advice"]
    bridge.state, bridge.problem = saved


def test_connect_to_running_engine_over_tcp(lf, bridge, tmp_path):
    bridge.stop()
    assert run_timers(lf, lambda: not bridge.busy and not bridge.process.running, 30)
    token_file = tmp_path / "token"
    proc = subprocess.Popen([sys.executable, "-m", "engine", "serve", "--host", "127.0.0.1", "--port", "0",
                             "--token-file", str(token_file), "--data-dir", str(tmp_path / "data")],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("latentforge ready tcp://"), line
        port = int(line.split()[2].rsplit(":", 1)[1])
        prefs = bpy.context.preferences.addons[MODULE].preferences
        prefs.mode, prefs.socket_path, prefs.host, prefs.port = "REMOTE", "", "127.0.0.1", port
        prefs.token, prefs.token_file = "", str(token_file)
        assert bpy.ops.latentforge.engine_connect() == {"FINISHED"}
        assert run_timers(lf, lambda: bridge.state in ("connected", "error"), 30)
        assert bridge.state == "connected", bridge.problem
        assert not bridge.owns_process
        s = bpy.context.scene.latentforge.generate
        s.model, s.category_text, s.count = "procedural", "chair", 1
        before = {j.key for j in bridge.jobs.all()}
        assert bpy.ops.latentforge.generate() == {"FINISHED"}
        (job,) = new_jobs(bridge, before)
        wait_jobs(lf, bridge, [job])
        assert job.state == "finished" and len(job_objects(job)) == 1
        # a wrong token is refused with a clear error
        prefs.token_file, prefs.token = "", "wrong"
        assert bpy.ops.latentforge.engine_connect() == {"FINISHED"}
        assert run_timers(lf, lambda: bridge.state in ("connected", "error") and not bridge.busy, 30)
        assert bridge.state == "error" and bridge.problem["code"].startswith("auth")
    finally:
        bridge.stop()
        run_timers(lf, lambda: not bridge.busy, 30)
        proc.terminate()
        proc.wait(10)


# ------------------------------------------------------------------------------ drawing

class _RecordingLayout:
    """Stands in for ``bpy.types.UILayout``: checks every property, operator and icon a draw uses."""

    _ICONS = set(bpy.types.UILayout.bl_rna.functions["label"].parameters["icon"].enum_items.keys())

    def __init__(self, log: list) -> None:
        self.__dict__["log"] = log

    def __setattr__(self, name, value):
        assert name in ("enabled", "active", "scale_y", "scale_x", "use_property_split",
                        "use_property_decorate", "alignment"), name

    def _sub(self, *args, **kwargs):
        return _RecordingLayout(self.log)

    row = column = box = split = _sub

    def _icon(self, icon):
        assert icon in self._ICONS, icon

    def label(self, text="", icon="NONE", **kwargs):
        self._icon(icon)
        self.log.append(("label", text))

    def prop(self, data, name, text=None, icon="NONE", **kwargs):
        self._icon(icon)
        assert name in data.bl_rna.properties.keys(), (data, name)
        self.log.append(("prop", name))

    def operator(self, idname, text=None, icon="NONE", **kwargs):
        self._icon(icon)
        module, op = idname.split(".")
        rna = getattr(getattr(bpy.ops, module), op).get_rna_type()
        self.log.append(("operator", idname))
        return _OperatorProps(rna)

    def progress(self, factor=0.0, type="BAR", text=""):
        assert 0.0 <= factor <= 1.0
        self.log.append(("progress", text))

    def separator(self, **kwargs):
        pass


class _OperatorProps:
    def __init__(self, rna) -> None:
        self.__dict__["rna"] = rna

    def __setattr__(self, name, value):
        assert name in self.rna.properties.keys(), name


def _draw_everything(lf) -> list:
    from types import SimpleNamespace

    log: list = []
    ctx = SimpleNamespace(scene=bpy.context.scene, selected_objects=list(bpy.context.selected_objects),
                          preferences=bpy.context.preferences)
    for panel in lf.panels.CLASSES:
        panel.draw(SimpleNamespace(layout=_RecordingLayout(log)), ctx)
        if hasattr(panel, "draw_header"):
            panel.draw_header(SimpleNamespace(layout=_RecordingLayout(log)), ctx)
    prefs = bpy.context.preferences.addons[MODULE].preferences

    class Proxy:
        layout = _RecordingLayout(log)

        def __getattr__(self, name):
            return getattr(prefs, name)

    saved = prefs.mode
    for mode in ("LOCAL", "REMOTE"):
        prefs.mode = mode
        type(prefs).draw(Proxy(), ctx)
    prefs.mode = saved
    return log


def test_panels_and_preferences_draw_when_disconnected(lf, bridge):
    assert bridge.state != "connected"
    labels = [t for kind, t in _draw_everything(lf) if kind == "label"]
    assert any(t.startswith("Not connected") for t in labels)
    assert "Connect to an engine first" in labels


def test_engine_missing_is_a_clear_error(lf, bridge, tmp_path):
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.mode = "LOCAL"
    prefs.python_path = str(tmp_path / "no-such-python")
    bpy.ops.latentforge.engine_start()
    assert run_timers(lf, lambda: bridge.state == "error" and not bridge.busy, 30)
    assert "No Python interpreter" in bridge.problem["message"]
    assert "Engine Python" in bridge.problem["advice"]
    # a Python without the engine: the engine exits during start-up and the log is named
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'No module named engine' >&2\nexit 1\n")
    fake.chmod(0o755)
    prefs.python_path = str(fake)
    bpy.ops.latentforge.engine_start()
    assert run_timers(lf, lambda: bridge.state == "error" and not bridge.busy, 30)
    assert "exited during start-up" in bridge.problem["message"]
    assert "No module named engine" in bridge.problem["message"]
    assert "engine.log" in bridge.problem["advice"]
    icon, text = bridge.status_line()
    assert icon == "ERROR" and "exited" in text
