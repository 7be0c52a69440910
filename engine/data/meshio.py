"""Loading user meshes (OBJ, PLY, STL, OFF, GLB/GLTF) and folders of them.

``load_mesh`` returns one triangle mesh in the file's own units, cleaned (zero-area and
degenerate faces dropped, duplicate vertices merged) or raises a typed
:class:`engine.errors.InvalidMesh` subclass with advice; scenes (glTF node trees, OBJ
groups) are flattened with their node transforms applied. Size limits are checked from
the file header before parsing wherever the format allows, so a 10M-face file is refused
at once instead of being read.

Up axis: the engine's frame is +Z up, -Y front (Blender's). Many sources (glTF by
definition, ShapeNet, most OBJ exporters) are +Y up with +Z towards the viewer; with
``y_up=True`` vertices are rotated +90° about X, ``(x, y, z) -> (x, -z, y)``, which is
exactly what Blender's importers do with their default "Y up, -Z forward" setting.
ModelNet (OFF) and STL/PLY from CAD tools are usually already Z-up.
"""

from __future__ import annotations

import json
import logging
import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from engine.data.errors import EmptyMesh, MeshTooLarge, MeshUnreadable, NonFiniteMesh
from engine.errors import InvalidMesh

log = logging.getLogger(__name__)

FORMATS = {".obj": "obj", ".ply": "ply", ".stl": "stl", ".off": "off", ".glb": "glb", ".gltf": "gltf"}
MAX_FACES = 2_000_000
MAX_FILE_BYTES = 512 * 1024 * 1024
LAYOUTS = ("auto", "shapenet", "modelnet", "flat")

# (x, y, z) -> (x, -z, y): +Y-up sources into the +Z-up frame
Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def _ply_faces(head: bytes) -> int | None:
    m = re.search(rb"^element\s+face\s+(\d+)", head, re.MULTILINE)
    return int(m.group(1)) if m else 0 if b"end_header" in head else None


def _off_faces(head: bytes) -> int | None:
    tokens = []
    for line in head.splitlines():
        line = line.split(b"#", 1)[0].strip()
        if line:
            tokens += line.split()
        if len(tokens) >= 4:
            break
    if tokens and tokens[0].upper().endswith(b"OFF"):
        tokens = tokens[1:]
    try:
        return int(tokens[1])
    except (IndexError, ValueError):
        return None


def _stl_faces(head: bytes, size: int) -> int | None:
    if len(head) >= 84:
        n = struct.unpack("<I", head[80:84])[0]
        if size == 84 + 50 * n:  # binary STL: the count is exact
            return n
    return None  # ASCII STL: bounded by the file size limit


def _obj_faces(path: Path, size: int) -> int | None:
    if size < 16 * 1024 * 1024:
        return None  # small: parsing is cheaper than counting
    count = 0
    with open(path, "rb") as fh:
        tail = b"\n"
        while chunk := fh.read(1 << 22):
            count += (tail + chunk).count(b"\nf ")
            tail = chunk[-1:]
    return count


def _gltf_faces(doc: dict) -> int | None:
    try:
        total = 0
        for mesh in doc.get("meshes", []):
            for prim in mesh.get("primitives", []):
                if prim.get("mode", 4) != 4:
                    continue
                if "indices" in prim:
                    total += doc["accessors"][prim["indices"]]["count"] // 3
                else:
                    total += doc["accessors"][prim["attributes"]["POSITION"]]["count"] // 3
        return total
    except (KeyError, IndexError, TypeError):
        return None


def peek_face_count(path: str | Path) -> int | None:
    """Triangle count read from the file header without parsing the geometry, or None if unknown.

    Exact for binary STL, PLY, OFF and glTF/GLB (per mesh, before instancing); a line
    count for large OBJ files (polygons count once).
    """
    p = Path(path)
    fmt = FORMATS.get(p.suffix.lower())
    size = p.stat().st_size
    with open(p, "rb") as fh:
        head = fh.read(1 << 16)
    if fmt == "ply":
        return _ply_faces(head.split(b"end_header", 1)[0] + b"end_header" if b"end_header" in head else head)
    if fmt == "off":
        return _off_faces(head)
    if fmt == "stl":
        return _stl_faces(head, size)
    if fmt == "obj":
        return _obj_faces(p, size)
    try:
        if fmt == "glb" and head[:4] == b"glTF" and len(head) >= 20:
            length = struct.unpack("<I", head[12:16])[0]
            with open(p, "rb") as fh:
                fh.seek(20)
                return _gltf_faces(json.loads(fh.read(length)))
        if fmt == "gltf" and size < 64 * 1024 * 1024:
            return _gltf_faces(json.loads(p.read_bytes()))
    except (ValueError, struct.error, OSError):
        return None
    return None


def _flatten(loaded) -> trimesh.Trimesh | None:
    """One Trimesh from whatever trimesh.load returned (scene graphs with transforms applied)."""
    if isinstance(loaded, trimesh.Trimesh):
        return loaded
    if isinstance(loaded, trimesh.Scene):
        # dump() returns each instance with its node's world transform applied
        meshes = [g for g in loaded.dump(concatenate=False) if isinstance(g, trimesh.Trimesh) and len(g.faces)]
        if not meshes:
            return None
        plain = [trimesh.Trimesh(m.vertices, m.faces, process=False) for m in meshes]
        return plain[0] if len(plain) == 1 else trimesh.util.concatenate(plain)
    return None


def load_mesh(path: str | Path, y_up: bool = False, max_faces: int = MAX_FACES,
              max_file_bytes: int = MAX_FILE_BYTES) -> trimesh.Trimesh:
    """Load one mesh file as a single cleaned triangle mesh (file units, +Z up after ``y_up``).

    Returns a Trimesh (float64 vertices V×3, int64 faces F×3) with zero-area and
    degenerate faces dropped, duplicate vertices merged and unused vertices removed; it may
    still be open, non-manifold or in several pieces (downstream SDFs use winding numbers).
    Raises MeshUnreadable (missing, unsupported or unparsable file), MeshTooLarge (over
    ``max_faces`` triangles or ``max_file_bytes``), NonFiniteMesh (NaN/inf coordinates),
    EmptyMesh (no faces, only points, or nothing left after dropping zero-area faces).
    """
    p = Path(path)
    name = p.name
    if not p.is_file():
        raise MeshUnreadable(f"{name}: no such file.", "Check the path.", details={"path": str(p)})
    fmt = FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise MeshUnreadable(f"{name}: unsupported format {p.suffix or '(no extension)'!r}; "
                             f"supported: {', '.join(sorted(FORMATS))}.", details={"path": str(p)})
    try:
        size = p.stat().st_size
        if size == 0:
            raise EmptyMesh(f"{name} is an empty file.", details={"path": str(p)})
        if size > max_file_bytes:
            raise MeshTooLarge(f"{name} is {size / 2**20:.0f} MiB, over the {max_file_bytes / 2**20:.0f} MiB limit.",
                               details={"path": str(p), "bytes": size})
        n = peek_face_count(p)
    except OSError as exc:
        raise MeshUnreadable(f"{name} cannot be read: {exc.strerror or exc}.", details={"path": str(p)}) from exc
    if n is not None and n > max_faces:
        raise MeshTooLarge(f"{name} has {n:,} faces, over the limit of {max_faces:,}.",
                           details={"path": str(p), "faces": n})
    try:
        loaded = trimesh.load(str(p), file_type=fmt, process=False)
    except Exception as exc:  # parsers raise anything from ValueError to struct.error on bad input
        raise MeshUnreadable(f"{name} could not be parsed as {fmt.upper()}: {type(exc).__name__}: {exc}",
                             details={"path": str(p)}) from exc
    mesh = _flatten(loaded)
    if mesh is None or len(mesh.faces) == 0:
        what = "only points" if isinstance(loaded, trimesh.PointCloud) else "no triangle faces"
        raise EmptyMesh(f"{name} has {what}.", details={"path": str(p)})
    return clean_mesh(np.asarray(mesh.vertices), np.asarray(mesh.faces), name=name, y_up=y_up, max_faces=max_faces)


def clean_mesh(vertices: np.ndarray, faces: np.ndarray, name: str = "mesh", y_up: bool = False,
               max_faces: int = MAX_FACES) -> trimesh.Trimesh:
    """Validate and clean raw arrays (V×3 vertices, F×3 faces) into a Trimesh; see load_mesh."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces)
    if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3:
        raise MeshUnreadable(f"{name}: expected V×3 vertices and F×3 faces, got {v.shape} and {f.shape}.")
    if len(f) > max_faces:
        raise MeshTooLarge(f"{name} has {len(f):,} faces, over the limit of {max_faces:,}.", details={"faces": len(f)})
    if len(f) == 0 or len(v) == 0:
        raise EmptyMesh(f"{name} has no triangle faces.")
    if not np.isfinite(v).all():
        bad = int((~np.isfinite(v)).any(axis=1).sum())
        raise NonFiniteMesh(f"{name} has {bad} vertices with NaN or infinite coordinates.", details={"vertices": bad})
    f = f.astype(np.int64)
    in_range = ((f >= 0) & (f < len(v))).all(axis=1)
    distinct = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])
    f = f[in_range & distinct]
    if len(f):
        tri = v[f]
        area2 = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
        diag = float(np.linalg.norm(np.ptp(v[np.unique(f)], axis=0)))
        # relative threshold: "zero" area at the file's own scale, not in absolute units
        f = f[area2 > (1e-9 * diag) ** 2]
    if len(f) == 0:
        raise EmptyMesh(f"{name} has no faces with non-zero area.")
    mesh = trimesh.Trimesh(v, f, process=True, validate=False)
    mesh.remove_unreferenced_vertices()
    if y_up:
        mesh.vertices = mesh.vertices @ Y_UP_TO_Z_UP.T
    return mesh


@dataclass(frozen=True)
class MeshEntry:
    """One mesh file found in a folder; unpacks as ``category, shape_id, path``."""

    category: str
    shape_id: str
    path: Path
    y_up: bool = False

    def __iter__(self):
        return iter((self.category, self.shape_id, self.path))

    def load(self, **kwargs) -> trimesh.Trimesh:
        """``load_mesh(path, y_up)`` with the folder's up-axis setting."""
        return load_mesh(self.path, y_up=self.y_up, **kwargs)


def _is_mesh(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in FORMATS and not p.name.startswith(".")


def _safe_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "mesh"


def detect_layout(root: str | Path) -> str:
    """"modelnet" if category folders hold train/test folders, "shapenet" if they hold one
    folder per model, else "flat"."""
    root = Path(root)
    for cat in sorted(d for d in root.iterdir() if d.is_dir()):
        subdirs = [d for d in cat.iterdir() if d.is_dir()]
        if any(d.name in ("train", "test") for d in subdirs):
            return "modelnet"
        if any(any(_is_mesh(f) for f in d.rglob("*")) for d in subdirs[:5]):
            return "shapenet"
    return "flat"


def iter_mesh_folder(root: str | Path, layout: str = "auto", y_up: bool = False) -> Iterator[MeshEntry]:
    """Mesh files of a folder as MeshEntry items (``category, shape_id, path``), sorted.

    Layouts:
    - ``shapenet``: ``<category>/<id>/model.obj`` (any supported file under the id folder;
      ShapeNetCore v2's ``models/model_normalized.obj`` included); id = folder name.
    - ``modelnet``: ``<category>/{train,test}/<name>.off`` (any supported extension);
      id = file stem. The split folder is the file's parent.
    - ``flat``: ``<category>/<name>.<ext>``, and files directly in ``root`` with the root
      folder's name as category; id = file stem.
    - ``auto``: :func:`detect_layout`.
    ``y_up`` is carried by every entry for its ``load()``. Ids are unique within a
    category: a clash (``a.obj`` next to ``a.ply``) gets a numbered suffix.
    """
    seen: set[tuple[str, str]] = set()
    for entry in _walk(Path(root), layout, y_up):
        sid, k = entry.shape_id, 1
        while (entry.category, sid) in seen:
            k += 1
            sid = f"{entry.shape_id}-{k}"
        seen.add((entry.category, sid))
        yield entry if sid == entry.shape_id else MeshEntry(entry.category, sid, entry.path, y_up)


def _walk(root: Path, layout: str, y_up: bool) -> Iterator[MeshEntry]:
    if not root.is_dir():
        raise MeshUnreadable(f"{root} is not a folder.", "Pass the folder that holds the category folders.")
    if layout not in LAYOUTS:
        raise MeshUnreadable(f"Unknown folder layout {layout!r}; use one of {', '.join(LAYOUTS)}.")
    if layout == "auto":
        layout = detect_layout(root)
    categories = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if layout == "shapenet":
        for cat in categories:
            for model in sorted(d for d in cat.iterdir() if d.is_dir()):
                files = sorted((f for f in model.rglob("*") if _is_mesh(f)),
                               key=lambda f: (not f.stem.startswith("model"), len(f.parts), str(f)))
                if files:
                    yield MeshEntry(cat.name, _safe_id(model.name), files[0], y_up)
    elif layout == "modelnet":
        for cat in categories:
            for split in ("train", "test"):
                for f in sorted((cat / split).glob("*")) if (cat / split).is_dir() else []:
                    if _is_mesh(f):
                        yield MeshEntry(cat.name, _safe_id(f.stem), f, y_up)
    else:
        for f in sorted(root.iterdir()):
            if _is_mesh(f):
                yield MeshEntry(_safe_id(root.name), _safe_id(f.stem), f, y_up)
        for cat in categories:
            for f in sorted(cat.iterdir()):
                if _is_mesh(f):
                    yield MeshEntry(cat.name, _safe_id(f.stem), f, y_up)


def scan_folder(root: str | Path, layout: str = "auto", y_up: bool = False,
                max_faces: int = MAX_FACES) -> tuple[list[tuple[MeshEntry, trimesh.Trimesh]], list[dict[str, str]]]:
    """Load every mesh of a folder; never raises for a bad file.

    Returns the usable (entry, mesh) pairs and one ``{"path", "code", "reason"}`` per
    skipped file (each also logged).
    """
    ok, skipped = [], []
    for entry in iter_mesh_folder(root, layout, y_up):
        try:
            ok.append((entry, entry.load(max_faces=max_faces)))
        except InvalidMesh as exc:
            log.warning("skipping %s: %s", entry.path, exc)
            skipped.append({"path": os.fspath(entry.path), "code": exc.code, "reason": exc.message})
    return ok, skipped
