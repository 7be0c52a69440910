#!/usr/bin/env python3
"""Ingest speed: our array-to-object path vs Blender's own C++ PLY importer, same mesh, same run.

Runs in headless Blender's Python (``.venv/bin/python`` with ``bpy``). Builds a
1M-vertex triangle mesh (a displaced grid), writes it as binary PLY, then times

- ``ours``: ``addon/scene_builders.build_mesh`` (attribute API + ``foreach_set`` on
  float32/int32) plus creating and linking the object;
- ``ply_import``: ``bpy.ops.wm.ply_import`` of the same mesh from disk;

each ``--repeat`` times (median), and prints one JSON line
``{"vertices", "faces", "ours_s", "ply_import_s", "speedup", ...}``. Goal: speedup >= 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def load_scene_builders():
    """Load addon/scene_builders.py alone (it needs only bpy, mathutils and numpy)."""
    spec = importlib.util.spec_from_file_location("latentforge_scene_builders", REPO / "addon" / "scene_builders.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def displaced_grid(n_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """A wavy square sheet with about ``n_vertices`` vertices and twice as many triangles."""
    side = int(round(np.sqrt(n_vertices)))
    xs = np.linspace(-1.0, 1.0, side, dtype=np.float32)
    x, y = np.meshgrid(xs, xs)
    z = 0.1 * np.sin(8 * x) * np.cos(8 * y)
    vertices = np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1).astype(np.float32)
    idx = np.arange(side * side, dtype=np.int32).reshape(side, side)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel(), idx[1:, :-1].ravel()
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)]).astype(np.int32)
    return vertices, faces


def write_ply(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    """Binary little-endian PLY, the layout Blender's importer reads fastest."""
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {len(vertices)}\nproperty float x\nproperty float y\nproperty float z\n"
        f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n"
    ).encode("ascii")
    face_rec = np.empty(len(faces), dtype=[("n", "u1"), ("v", "<i4", (3,))])
    face_rec["n"] = 3
    face_rec["v"] = faces
    with open(path, "wb") as fh:
        fh.write(header)
        fh.write(vertices.astype("<f4").tobytes())
        fh.write(face_rec.tobytes())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vertices", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--validate", action="store_true", help="also check mesh.validate() finds nothing (slow)")
    args = parser.parse_args(argv)

    import bpy

    sb = load_scene_builders()
    vertices, faces = displaced_grid(args.vertices)
    ours, ply = [], []
    with tempfile.TemporaryDirectory() as tmp:
        ply_path = Path(tmp) / "bench.ply"
        write_ply(ply_path, vertices, faces)
        collection = bpy.context.scene.collection
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            mesh = sb.build_mesh("bench_ours", vertices, faces)
            obj = sb.new_object("bench_ours", mesh, collection)
            ours.append(time.perf_counter() - t0)
            ours_counts = (len(mesh.vertices), len(mesh.polygons))
            valid = None
            if args.validate:
                valid = not mesh.validate(verbose=False)
            bpy.data.objects.remove(obj)
            bpy.data.meshes.remove(mesh)

            t0 = time.perf_counter()
            bpy.ops.wm.ply_import(filepath=str(ply_path))
            ply.append(time.perf_counter() - t0)
            imported = bpy.context.selected_objects[0]
            ply_counts = (len(imported.data.vertices), len(imported.data.polygons))
            imported_mesh = imported.data
            bpy.data.objects.remove(imported)
            bpy.data.meshes.remove(imported_mesh)

    if ours_counts != ply_counts:
        print(json.dumps({"error": f"meshes differ: ours {ours_counts}, ply {ply_counts}"}))
        return 1
    ours_s, ply_s = statistics.median(ours), statistics.median(ply)
    result = {
        "vertices": int(len(vertices)),
        "faces": int(len(faces)),
        "ours_s": round(ours_s, 4),
        "ply_import_s": round(ply_s, 4),
        "speedup": round(ply_s / ours_s, 2),
        "repeat": args.repeat,
        "ours_all_s": [round(t, 4) for t in ours],
        "ply_import_all_s": [round(t, 4) for t in ply],
        "blender": bpy.app.version_string,
    }
    if args.validate:
        result["validate_clean"] = valid
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
