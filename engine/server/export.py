"""Write results received from the engine to files (used by the CLI).

Meshes go through trimesh's exporters (``ply``, ``obj``, ``glb``); point clouds to ``ply``
(or ``npz``); image results to one PNG per view plus the camera poses in an ``.npz``.
``npz`` keeps every array exactly as received (no pickles). Files hold the object in its
own frame; a result's placement (``transform``) is recorded in the summary.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from engine.errors import InvalidRequest

FORMATS = ("ply", "obj", "glb", "npz")


class UnsupportedFormat(InvalidRequest):
    """A file format that cannot hold this kind of result."""

    code = "export.unsupported_format"
    advice = "Meshes: ply, obj, glb or npz; point clouds: ply or npz; images are written as PNG files."


def _stem(index: int, meta: Mapping[str, Any], kind: str) -> str:
    label = str(meta.get("category") or kind)
    label = re.sub(r"[^A-Za-z0-9_-]+", "_", label)[:40] or kind
    return f"{label}_{index:03d}"


def write_result(out_dir: Path, index: int, kind: str, arrays: Mapping[str, np.ndarray],
                 meta: Mapping[str, Any], fmt: str) -> list[Path]:
    """Write one result into ``out_dir``; return the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = _stem(index, meta, kind)
    if fmt not in FORMATS:
        raise UnsupportedFormat(f"Unknown format {fmt!r}.")
    if fmt == "npz" and kind != "images":
        path = out_dir / f"{stem}.npz"
        np.savez(path, **{k: np.asarray(v) for k, v in arrays.items()})
        return [path]
    if kind == "mesh":
        import trimesh
        mesh = trimesh.Trimesh(vertices=np.asarray(arrays["vertices"], dtype=np.float64),
                               faces=np.asarray(arrays["faces"], dtype=np.int64),
                               vertex_normals=arrays.get("normals"), process=False)
        if arrays.get("colors") is not None:
            mesh.visual.vertex_colors = np.asarray(arrays["colors"])
        path = out_dir / f"{stem}.{fmt}"
        mesh.export(path, file_type=fmt)
        return [path]
    if kind == "points":
        if fmt != "ply":
            raise UnsupportedFormat(f"A point cloud cannot be written as {fmt}.", "Use --format ply or npz.")
        import trimesh
        cloud = trimesh.PointCloud(np.asarray(arrays["points"], dtype=np.float64),
                                   colors=arrays.get("colors"))
        path = out_dir / f"{stem}.ply"
        cloud.export(path, file_type="ply")
        return [path]
    if kind == "images":
        from PIL import Image
        paths = []
        for k, img in enumerate(np.asarray(arrays["images"])):
            p = out_dir / f"{stem}_view{k:02d}.png"
            Image.fromarray(np.ascontiguousarray(img), "RGBA").save(p)
            paths.append(p)
        p = out_dir / f"{stem}_poses.npz"
        np.savez(p, poses=np.asarray(arrays["poses"]))
        return paths + [p]
    raise UnsupportedFormat(f"Unknown result kind {kind!r}.")
