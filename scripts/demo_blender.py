#!/usr/bin/env python3
"""The Blender half of `make demo`: the add-on in headless Blender populates and renders a scene.

1. builds the extension zip (scripts/build_extension.py) and installs + enables it in
   headless Blender (``bpy``) with a temporary HOME, so no user configuration is touched;
2. starts an engine from the add-on preferences (this Python, which has the engine);
3. records the live preview of one generated object (frames tiled into
   ``preview_sequence.png``: points while the job runs, then the final object);
4. populates a small scene around the 3D cursor through the Populate operator (ground
   plane, camera and light added here), renders it with Cycles (CPU) or Workbench;
5. writes ``demo.png`` and ``demo.blend`` into ``--out`` and prints both paths, plus one
   JSON line with counts and the timer-tick statistics measured while streaming.

    python scripts/demo_blender.py --out out/demo/blender [--engine workbench|cycles]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODULE = "bl_ext.user_default.latentforge"
CATEGORY_COLORS = {"chair": (0.75, 0.32, 0.18), "table": (0.55, 0.38, 0.22), "lamp": (0.85, 0.78, 0.35),
                   "sofa": (0.25, 0.40, 0.65), "vase": (0.30, 0.60, 0.55), "bench": (0.45, 0.45, 0.50),
                   "mug": (0.80, 0.80, 0.78), "bottle": (0.35, 0.55, 0.30)}


def _isolate_blender_home() -> str:
    """Point HOME and Blender's user folders at a temp dir before bpy is imported."""
    home = tempfile.mkdtemp(prefix="lf-demo-home-")
    os.environ["HOME"] = home
    os.environ["BLENDER_USER_RESOURCES"] = os.path.join(home, "blender")
    return home


def _load_build():
    spec = importlib.util.spec_from_file_location("build_extension", REPO / "scripts" / "build_extension.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Demo:
    def __init__(self, out: Path, render_engine: str) -> None:
        import bpy

        self.bpy = bpy
        self.out = out
        self.render_engine = render_engine
        self.lf = None
        self.bridge = None

    # ---------------------------------------------------------------- add-on + engine

    def install(self, zip_path: Path) -> None:
        bpy = self.bpy
        result = bpy.ops.extensions.package_install_files(filepath=str(zip_path), repo="user_default",
                                                          enable_on_install=True)
        if result != {"FINISHED"} or MODULE not in sys.modules:
            raise SystemExit(f"installing {zip_path} failed: {result}")
        self.lf = sys.modules[MODULE]
        self.bridge = self.lf.engine_bridge.BRIDGE

    def run_timers(self, until, timeout: float, every=None) -> bool:
        """Headless Blender has no event loop: call the add-on's registered timer ourselves."""
        assert self.bpy.app.timers.is_registered(self.lf.engine_bridge.tick)
        return self.lf.engine_bridge.run_until(until, timeout, every)

    def start_engine(self, data_dir: Path) -> None:
        prefs = self.bpy.context.preferences.addons[MODULE].preferences
        prefs.mode = "LOCAL"
        prefs.python_path = sys.executable
        prefs.data_dir = str(data_dir)
        self.bpy.ops.latentforge.engine_start()
        if not self.run_timers(lambda: self.bridge.state in ("connected", "error"), 180):
            raise SystemExit("the engine did not start in 180 s")
        if self.bridge.state != "connected":
            raise SystemExit(f"engine error: {self.bridge.problem}")

    def wait(self, jobs, timeout: float = 600.0, every=None) -> None:
        done = lambda: all(j.state in ("finished", "failed", "cancelled") for j in jobs)  # noqa: E731
        if not self.run_timers(done, timeout, every):
            raise SystemExit(f"jobs did not finish in {timeout:.0f} s: {[(j.label, j.state) for j in jobs]}")
        for j in jobs:
            if j.state != "finished":
                raise SystemExit(f"{j.label}: {j.state}: {j.error}")

    # ---------------------------------------------------------------- scene

    def reset_scene(self) -> None:
        import numpy as np

        bpy = self.bpy
        for obj in list(bpy.data.objects):
            bpy.data.objects.remove(obj)
        scene = bpy.context.scene
        scene.cursor.location = (0.0, 0.0, 0.0)
        s = 14.0
        ground_mesh = self.lf.scene_builders.build_mesh(
            "Ground", np.array([(-s, -s, 0), (s, -s, 0), (s, s, 0), (-s, s, 0)], np.float32),
            np.array([(0, 1, 2), (0, 2, 3)], np.int32))
        ground = bpy.data.objects.new("Ground", ground_mesh)
        ground.data.materials.append(self._material("Ground", (0.62, 0.62, 0.60), roughness=0.8))
        scene.collection.objects.link(ground)
        sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
        sun.data.energy = 3.0
        sun.data.angle = math.radians(8)
        sun.rotation_euler = (math.radians(50), math.radians(10), math.radians(35))
        scene.collection.objects.link(sun)
        cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
        cam.data.lens = 35
        scene.collection.objects.link(cam)
        scene.camera = cam
        world = scene.world or bpy.data.worlds.new("World")
        scene.world = world
        world.color = (0.78, 0.82, 0.88)
        if world.node_tree is not None:
            bg = world.node_tree.nodes.get("Background")
            if bg is not None:
                bg.inputs["Color"].default_value = (0.78, 0.82, 0.88, 1.0)
                bg.inputs["Strength"].default_value = 0.8

    def _material(self, name: str, color, roughness: float = 0.5):
        mat = self.bpy.data.materials.get(name) or self.bpy.data.materials.new(name)
        mat.diffuse_color = (*color, 1.0)
        if mat.node_tree is None:
            mat.use_nodes = True
        bsdf = mat.node_tree.nodes.get("Principled BSDF")
        if bsdf is not None:
            bsdf.inputs["Base Color"].default_value = (*color, 1.0)
            bsdf.inputs["Roughness"].default_value = roughness
        return mat

    def color_objects(self, objects) -> None:
        for obj in objects:
            cat = obj.get("latentforge_category", "")
            mat = self._material(f"Demo {cat or obj.type}", CATEGORY_COLORS.get(cat, (0.6, 0.6, 0.62)))
            if not obj.data.materials:
                obj.data.materials.append(mat)

    def frame_camera(self, objects, pitch_deg: float = 62.0, yaw_deg: float = 35.0, margin: float = 1.15) -> None:
        import numpy as np
        from mathutils import Euler, Vector

        sb = self.lf.scene_builders
        boxes = [sb.world_bounds(o) for o in objects]
        lo = np.min([b[0] for b in boxes], axis=0)
        hi = np.max([b[1] for b in boxes], axis=0)
        center = Vector(((lo + hi) / 2).tolist())
        radius = float(np.linalg.norm(hi - lo)) / 2 * margin
        cam = self.bpy.context.scene.camera
        fov = cam.data.angle
        dist = radius / math.sin(fov / 2) * 0.85
        rot = Euler((math.radians(pitch_deg), 0.0, math.radians(yaw_deg)))
        direction = Vector((0.0, 0.0, 1.0))
        direction.rotate(rot)
        cam.location = center + direction * dist
        cam.rotation_euler = rot

    def render(self, path: Path, size: tuple[int, int], samples: int = 16) -> float:
        bpy = self.bpy
        scene = bpy.context.scene
        scene.render.resolution_x, scene.render.resolution_y = size
        scene.render.resolution_percentage = 100
        scene.render.image_settings.file_format = "PNG"
        scene.render.filepath = str(path)
        if self.render_engine == "cycles":
            scene.render.engine = "CYCLES"
            scene.cycles.device = "CPU"
            scene.cycles.samples = samples
            scene.cycles.use_denoising = True
        else:
            scene.render.engine = "BLENDER_WORKBENCH"
            shading = scene.display.shading
            shading.light = "STUDIO"
            shading.color_type = "MATERIAL"
            shading.show_shadows = True
            shading.show_cavity = True
        t0 = time.perf_counter()
        bpy.ops.render.render(write_still=True)
        return time.perf_counter() - t0

    # ---------------------------------------------------------------- steps

    def preview_sequence(self, category: str, model: str) -> dict:
        """Render the preview object each time it changes, then the final object; tile the frames."""
        import numpy as np

        bpy = self.bpy
        s = bpy.context.scene.latentforge.generate
        s.model, s.input_mode, s.category_text, s.count = model, "CATEGORY", category, 1
        if category in self._categories(model):
            s.category = category
        s.randomize_seed, s.seed = False, 11
        # Results are centred on the cursor (objects fit [-1, 1]^3): lift it so the shape stands on the ground.
        bpy.context.scene.cursor.location = (0.0, 0.0, 1.0)
        before = {j.key for j in self.bridge.jobs.all()}
        bpy.ops.latentforge.generate()
        (job,) = [j for j in self.bridge.jobs.all() if j.key not in before]
        cam = bpy.context.scene.camera
        cam.location, cam.rotation_euler = (0.0, -3.6, 2.3), (math.radians(70), 0.0, 0.0)
        frames_dir = self.out / "preview_frames"
        frames_dir.mkdir(parents=True, exist_ok=True)
        frames: list[Path] = []
        state = {"last": None}

        def capture() -> None:
            obj = bpy.data.objects.get(job.preview) if job.preview else None
            if obj is None or len(frames) >= 6:
                return
            pos = np.empty(len(obj.data.attributes["position"].data) * 3, np.float32)
            obj.data.attributes["position"].data.foreach_get("vector", pos)
            key = hash(pos.tobytes())
            if key != state["last"]:
                state["last"] = key
                path = frames_dir / f"frame_{len(frames):02d}.png"
                self.render(path, (256, 256), samples=8)
                frames.append(path)

        self.wait([job], every=capture)
        final = [bpy.data.objects[n] for n in job.objects]
        self.color_objects(final)
        path = frames_dir / f"frame_{len(frames):02d}.png"
        self.render(path, (256, 256), samples=8)
        frames.append(path)
        tiles = [self._read_png(p) for p in frames]
        tiled = np.concatenate(tiles, axis=1)
        out = self.out / "preview_sequence.png"
        self._write_png(out, tiled)
        self.lf.scene_builders.remove_objects(final)
        bpy.context.scene.cursor.location = (0.0, 0.0, 0.0)
        return {"preview_frames": len(frames) - 1, "sequence": str(out)}

    def _categories(self, model: str) -> list[str]:
        return self.lf.properties.model_categories(model)

    def _read_png(self, path: Path):
        import numpy as np

        img = self.bpy.data.images.load(str(path))
        w, h = img.size
        px = np.empty(w * h * 4, np.float32)
        img.pixels.foreach_get(px)
        self.bpy.data.images.remove(img)
        return px.reshape(h, w, 4)

    def _write_png(self, path: Path, pixels) -> None:
        h, w = pixels.shape[:2]
        img = self.bpy.data.images.new(path.stem, w, h, alpha=True)
        img.pixels.foreach_set(pixels.ravel())
        img.filepath_raw = str(path)
        img.file_format = "PNG"
        img.save()
        self.bpy.data.images.remove(img)

    def populate(self, model: str) -> list:
        bpy = self.bpy
        p = bpy.context.scene.latentforge.populate
        p.model = model
        p.rows.clear()
        for category, count, variants in (("chair", 4, 2), ("table", 2, 2), ("lamp", 2, 1), ("sofa", 1, 1),
                                          ("vase", 3, 2), ("bench", 1, 1)):
            row = p.rows.add()
            row.input_mode, row.category, row.count, row.variants = "CATEGORY", category, count, variants
        p.target, p.radius, p.spacing = "CURSOR", 6.0, 0.4
        p.rotate, p.scale_min, p.scale_max = True, 0.8, 1.15
        p.randomize_seed, p.seed = False, 2026
        before = {j.key for j in self.bridge.jobs.all()}
        bpy.ops.latentforge.populate()
        jobs = [j for j in self.bridge.jobs.all() if j.key not in before]
        self.wait(jobs)
        objects = [bpy.data.objects[n] for j in jobs for n in j.objects if n in bpy.data.objects]
        self.color_objects(objects)
        return objects

    def generate_points(self) -> list:
        """A few point clouds from the learned points model, when it is installed."""
        bpy = self.bpy
        entry = next((m for m in self.bridge.models if m["name"] == "points"), None)
        if not entry or not entry.get("available"):
            return []
        s = bpy.context.scene.latentforge.generate
        s.model, s.input_mode, s.count, s.spacing = "points", "CATEGORY", 2, 2.5
        cats = self._categories("points")
        if cats:
            s.category = cats[0]
        else:
            s.category_text = "chair"
        bpy.context.scene.cursor.location = (0.0, -9.0, 1.0)
        before = {j.key for j in self.bridge.jobs.all()}
        bpy.ops.latentforge.generate()
        jobs = [j for j in self.bridge.jobs.all() if j.key not in before]
        self.wait(jobs)
        bpy.context.scene.cursor.location = (0.0, 0.0, 0.0)
        return [bpy.data.objects[n] for j in jobs for n in j.objects]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "out" / "demo" / "blender")
    parser.add_argument("--engine", choices=("cycles", "workbench"), default="cycles")
    parser.add_argument("--size", type=int, nargs=2, default=(960, 540))
    args = parser.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    _isolate_blender_home()
    zip_path = Path(_load_build().build(out / "dist")["zip"])

    demo = Demo(out, args.engine)
    demo.install(zip_path)
    t0 = time.perf_counter()
    demo.reset_scene()
    demo.start_engine(out / "engine-data")
    summary: dict = {"engine_start_s": round(time.perf_counter() - t0, 2)}
    try:
        summary.update(demo.preview_sequence("chair", "procedural"))
        demo.bridge.tick_stats.reset()
        t1 = time.perf_counter()
        objects = demo.populate("procedural")
        points = demo.generate_points()
        summary["populate_s"] = round(time.perf_counter() - t1, 2)
        summary["tick_stats"] = demo.bridge.tick_stats.summary()
        demo.frame_camera(objects + points)
        png, blend = out / "demo.png", out / "demo.blend"
        summary["render_s"] = round(demo.render(png, tuple(args.size)), 2)
        demo.bpy.ops.wm.save_as_mainfile(filepath=str(blend), compress=True)
        summary.update(objects=len(objects), point_clouds=len(points),
                       meshes_shared=len(objects) - len({o.data.name for o in objects}),
                       render_engine=args.engine)
    finally:
        demo.bridge.stop()
        demo.run_timers(lambda: not demo.bridge.busy, 30)
    print(f"render: {png}")
    print(f"blend:  {blend}")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
