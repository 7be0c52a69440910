"""Read point clouds for evaluation from mesh and point files, one file or whole folders.

Supported: ``.ply`` (mesh or point cloud), ``.obj``, ``.off``, ``.stl``, ``.glb``/``.gltf``
(through trimesh) and ``.npz`` (an array named ``points``, ``xyz`` or ``pc``, or the only
array, of shape N×3 or N×≥3 where the first three columns are xyz; or a batch S×N×3 of
shapes, whose ids are ``<file id>/<k>`` and, outside category folders, whose category is
the file name: ``DIR/chair.npz``). Meshes are sampled
uniformly by area to ``n_points``; point files with more points are subsampled (seeded),
with fewer points they are rejected (EMD needs equal sizes).

Folder layouts (category = first folder below the root, when there is one):
  ``ROOT/<id>.ply``, ``ROOT/<category>/<id>.ply`` (what ``latentforge dataset export``
  writes), and the dataset cache ``ROOT/<category>/<shape_id>/{points.npz, mesh.ply, ...}``
  (a shape folder is recognised by its ``meta.json``; its ``points.npz`` is used, else
  ``mesh.ply``; the other files in it are not shapes).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.eval.errors import (EmptyShape, NonFiniteShape, NoShapes, ShapeFileTooLarge,
                                TooFewPoints, UnreadableShapeFile)
from engine.errors import LatentforgeError

log = logging.getLogger(__name__)

MESH_SUFFIXES = (".ply", ".obj", ".off", ".stl", ".glb", ".gltf")
POINT_SUFFIXES = (".npz",)
SUFFIXES = MESH_SUFFIXES + POINT_SUFFIXES
_NPZ_KEYS = ("points", "xyz", "pc")
DEFAULT_MAX_FILE_MB = 1024.0


def _check_points(points: np.ndarray, path: Path) -> np.ndarray:
    if points.ndim != 2 or points.shape[1] < 3:
        raise UnreadableShapeFile(f"{path}: expected an N×3 array, got shape {points.shape}.")
    points = np.asarray(points[:, :3], dtype=np.float64)
    if len(points) == 0:
        raise EmptyShape(f"{path}: no points.")
    if not np.isfinite(points).all():
        raise NonFiniteShape(f"{path}: {int((~np.isfinite(points)).any(axis=1).sum())} points "
                             "have NaN or infinite coordinates.")
    return points


def _read_npz(path: Path) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = list(data.keys())
            key = next((k for k in _NPZ_KEYS if k in keys), keys[0] if len(keys) == 1 else None)
            if key is None:
                raise UnreadableShapeFile(f"{path}: no array named {' / '.join(_NPZ_KEYS)} "
                                          f"(found {', '.join(keys) or 'none'}).")
            arr = np.asarray(data[key])
    except LatentforgeError:
        raise
    except Exception as exc:  # zip/npy parse errors come in many types
        raise UnreadableShapeFile(f"{path}: cannot read npz ({exc}).") from exc
    if not np.issubdtype(arr.dtype, np.number):
        raise UnreadableShapeFile(f"{path}: array {key!r} is not numeric ({arr.dtype}).")
    return arr


def _sample_mesh(vertices: np.ndarray, faces: np.ndarray, n: int, seed: int,
                 path: Path) -> np.ndarray:
    import trimesh

    if not np.isfinite(vertices[np.unique(faces)]).all():
        raise NonFiniteShape(f"{path}: mesh has NaN or infinite vertex coordinates.")
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False, validate=False)
    if not np.isfinite(mesh.area) or mesh.area <= 0.0:
        raise EmptyShape(f"{path}: the mesh's faces have zero total area.")
    points, _ = trimesh.sample.sample_surface(mesh, n, seed=seed)
    return np.asarray(points, dtype=np.float64)


def _load_geometry(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(vertices V×3, faces F×3 or None for a point cloud) from a trimesh-readable file."""
    import trimesh

    try:
        loaded = trimesh.load(str(path), process=False)
    except Exception as exc:  # trimesh raises many exception types on damaged files
        raise UnreadableShapeFile(f"{path}: cannot parse ({type(exc).__name__}: {exc}).") from exc
    if isinstance(loaded, trimesh.Scene):
        geoms = [g for g in loaded.dump() if isinstance(g, (trimesh.Trimesh, trimesh.PointCloud))]
        meshes = [g for g in geoms if isinstance(g, trimesh.Trimesh) and len(g.faces)]
        if meshes:
            loaded = trimesh.util.concatenate(meshes)
        elif geoms:
            loaded = trimesh.PointCloud(np.concatenate([np.asarray(g.vertices) for g in geoms]))
        else:
            raise EmptyShape(f"{path}: the scene holds no mesh or point geometry.")
    if isinstance(loaded, trimesh.Trimesh):
        vertices = np.asarray(loaded.vertices, dtype=np.float64)
        faces = np.asarray(loaded.faces, dtype=np.int64)
        return vertices, (faces if len(faces) else None)
    if isinstance(loaded, trimesh.PointCloud):
        return np.asarray(loaded.vertices, dtype=np.float64), None
    raise UnreadableShapeFile(f"{path}: unsupported content ({type(loaded).__name__}).")


def _check_file(path: Path, max_file_mb: float) -> str:
    """The lower-case suffix of a readable, non-empty, not too large supported file."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise UnreadableShapeFile(f"{path}: unsupported file type {suffix or '(none)'}.")
    try:
        size_mb = path.stat().st_size / 2**20
    except OSError as exc:
        raise UnreadableShapeFile(f"{path}: cannot open ({exc.strerror}).") from exc
    if size_mb > max_file_mb:
        raise ShapeFileTooLarge(f"{path}: {size_mb:.0f} MB is over the {max_file_mb:.0f} MB limit.")
    if size_mb == 0:
        raise EmptyShape(f"{path}: the file is empty.")
    return suffix


def _fit_count(points: np.ndarray, n_points: int, seed: int, pad: bool, where: str) -> np.ndarray:
    """Exactly n_points of a checked cloud: seeded subset, or padding by repetition."""
    if len(points) < n_points and pad:
        extra = np.random.default_rng(seed).choice(len(points), n_points - len(points))
        points = np.concatenate([points, points[extra]])
    if len(points) < n_points:
        raise TooFewPoints(f"{where}: {len(points)} points, {n_points} needed.")
    if len(points) > n_points:
        idx = np.random.default_rng(seed).choice(len(points), n_points, replace=False)
        points = points[np.sort(idx)]
    return points.astype(np.float32)


def read_points(path: str | os.PathLike, n_points: int = 2048, *, seed: int = 0,
                max_file_mb: float = DEFAULT_MAX_FILE_MB, pad: bool = False) -> np.ndarray:
    """Read one file as exactly ``n_points`` points: float32 n_points×3, in file units.

    Meshes are surface-sampled (uniform by area, seeded); point clouds with more points are
    subsampled without replacement (seeded); with fewer points they are rejected, or with
    ``pad=True`` topped up by repeating random points (harmless for max-pooling networks
    such as the classifier, wrong for EMD/Chamfer sets). Raises an ``InvalidMesh``
    subclass with advice for unreadable, empty, non-finite or too large files, point
    clouds with too few points, and ``.npz`` batches of several shapes (see
    ``read_npz_shapes``).
    """
    path = Path(path)
    suffix = _check_file(path, max_file_mb)
    if suffix in POINT_SUFFIXES:
        vertices, faces = _read_npz(path), None
        if vertices.ndim == 3 and len(vertices) == 1:
            vertices = vertices[0]
        elif vertices.ndim == 3:
            raise UnreadableShapeFile(f"{path}: holds a batch of {len(vertices)} shapes; read it "
                                      "with read_npz_shapes or a folder command.")
    else:
        vertices, faces = _load_geometry(path)
    if faces is not None:
        if len(vertices) == 0:
            raise EmptyShape(f"{path}: no vertices.")
        points = _sample_mesh(vertices, faces, n_points, seed, path)
    else:
        points = _fit_count(_check_points(vertices, path), n_points, seed, pad, str(path))
    return _check_points(points, path).astype(np.float32)


def read_npz_shapes(path: str | os.PathLike, n_points: int = 2048, *, seed: int = 0,
                    max_file_mb: float = DEFAULT_MAX_FILE_MB, pad: bool = False
                    ) -> tuple[bool, list[np.ndarray | LatentforgeError]]:
    """Read an ``.npz`` holding one cloud (N×3) or a batch (S×N×3, as the points model's
    ``--samples-out`` writes). Returns (batched, items): one item per shape, either its
    float32 n_points×3 points or the typed error that makes it unusable (a bad shape in a
    batch does not discard the others). Errors of the whole file are raised.
    """
    path = Path(path)
    _check_file(path, max_file_mb)
    arr = _read_npz(path)
    if arr.ndim != 3:
        return False, [read_points(path, n_points, seed=seed, max_file_mb=max_file_mb, pad=pad)]
    items: list[np.ndarray | LatentforgeError] = []
    for k, cloud in enumerate(arr):
        where = f"{path}[{k}]"
        try:
            items.append(_fit_count(_check_points(cloud, Path(where)), n_points, seed, pad, where))
        except LatentforgeError as exc:
            items.append(exc)
    return True, items


@dataclass
class ShapeFile:
    """One shape found in a folder: its file, id (path below the root, no suffix), category."""

    path: Path
    shape_id: str
    category: str | None


def find_shape_files(root: str | os.PathLike) -> list[ShapeFile]:
    """Every shape file below ``root`` (sorted), with ids and categories (see module doc)."""
    root = Path(root)
    if not root.is_dir():
        raise NoShapes(f"{root} is not a folder.")
    found: list[ShapeFile] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        here = Path(dirpath)
        names = sorted(filenames)
        if "meta.json" in names and here != root:  # a dataset shape folder
            pick = next((n for n in ("points.npz", "mesh.ply") if n in names), None)
            names = [pick] if pick else []
            dirnames[:] = []
            rel = here.relative_to(root)
            if pick:
                found.append(ShapeFile(here / pick, rel.as_posix(),
                                       rel.parts[0] if len(rel.parts) > 1 else None))
            continue
        for name in names:
            if Path(name).suffix.lower() not in SUFFIXES or name.startswith("."):
                continue
            rel = (here / name).relative_to(root)
            found.append(ShapeFile(here / name, rel.with_suffix("").as_posix(),
                                   rel.parts[0] if len(rel.parts) > 1 else None))
    return found


@dataclass
class PointFolder:
    """Shapes read from a folder: points S×N×3 float32, with ids/categories and skips."""

    points: np.ndarray
    ids: list[str]
    categories: list[str | None]
    skipped: dict[str, dict[str, str]] = field(default_factory=dict)  # id -> {code, message}


def read_point_folder(root: str | os.PathLike, n_points: int = 2048, *, seed: int = 0,
                      max_file_mb: float = DEFAULT_MAX_FILE_MB, progress: bool = False,
                      categories: list[str] | None = None, pad: bool = False) -> PointFolder:
    """Read every shape below ``root`` as ``n_points`` points (see ``read_points``).

    A file that cannot be used is skipped and recorded in ``skipped`` with its error code,
    never raised; ``NoShapes`` is raised only when nothing usable is left. Each file uses
    the sampling seed ``seed`` (the same seed for every file keeps runs reproducible).
    ``categories`` keeps only shapes of those categories; ``pad`` as in ``read_points``.
    """
    files = find_shape_files(root)
    if categories is not None:
        files = [f for f in files if f.category in set(categories)]
    iterator = files
    if progress:
        from tqdm import tqdm
        iterator = tqdm(files, desc=f"reading {Path(root).name}", unit="file", leave=False)
    pts, ids, cats, skipped = [], [], [], {}
    for f in iterator:
        try:
            if f.path.suffix.lower() in POINT_SUFFIXES:
                batched, items = read_npz_shapes(f.path, n_points, seed=seed,
                                                 max_file_mb=max_file_mb, pad=pad)
            else:
                batched = False
                items = [read_points(f.path, n_points, seed=seed, max_file_mb=max_file_mb, pad=pad)]
        except LatentforgeError as exc:
            batched, items = False, [exc]
        # A batch file outside category folders is named after its category (chair.npz).
        category = f.category if (f.category is not None or not batched) else f.path.stem
        for k, item in enumerate(items):
            sid = f"{f.shape_id}/{k}" if batched else f.shape_id
            if isinstance(item, LatentforgeError):
                log.warning("skipping %s: %s", sid, item)
                skipped[sid] = {"code": item.code, "message": item.message}
                continue
            pts.append(item)
            ids.append(sid)
            cats.append(category)
    if not pts:
        raise NoShapes(f"{root}: no usable shape files ({len(files)} found, {len(skipped)} skipped).",
                       details={"skipped": skipped})
    return PointFolder(np.stack(pts), ids, cats, skipped)
