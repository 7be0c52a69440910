"""Cached training datasets: per shape its mesh, surface points, tet-grid SDF and renders.

Layout (see docs/dataset.md)::

    DIR/index.json
    DIR/<split>/<category>/<shape_id>/mesh.ply      canonical-frame mesh (fitted to [-1, 1]^3)
                                     /points.npz    points f32 N×3, normals f32 N×3
                                     /sdf.npz       sdf f32 V (tet-grid vertices of resolution R over
                                                    [-bound, bound]^3), resolution, bound
                                     /renders.npz   rgba u8 B×H×W×4, c2w f32 B×4×4, polar/azimuth/radius f32 B,
                                                    fov_deg, n_fixed
                                     /meta.json     category, split, seed or source, params, captions, settings

A shape counts as built only when its ``meta.json`` exists, lists files that all exist and
records the same settings as the current build; every file is written to a temporary name
and renamed into place, ``meta.json`` last, so an interrupted build resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing as mp
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import trimesh

from engine.data.errors import DatasetMismatch, DatasetNotFound, InvalidSplit
from engine.errors import LatentforgeError
from engine.fileio import replace_atomically

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
SHAPE_FILES = ("mesh.ply", "points.npz", "sdf.npz", "renders.npz")


@dataclass(frozen=True)
class BuildSettings:
    """What is computed per shape; stored in each meta.json so a changed setting triggers a rebuild."""

    n_points: int = 2048
    grid_res: int = 32
    renders: bool = True
    render_size: int = 128
    fixed_views: int = 8
    random_views: int = 8
    fov_deg: float = 40.0
    framing: str = "tight"

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        if not self.renders:
            for k in ("render_size", "fixed_views", "random_views", "fov_deg", "framing"):
                d.pop(k)
        return d

    def files(self) -> list[str]:
        return [f for f in SHAPE_FILES if self.renders or f != "renders.npz"]


@dataclass(frozen=True)
class ShapeTask:
    """One shape to build: procedural (``seed`` set) or a user mesh (``source`` set)."""

    split: str
    category: str
    shape_id: str
    seed: int | None = None
    source: str | None = None
    y_up: bool = False
    max_faces: int | None = None


@dataclass
class BuildReport:
    """Counts of one build run, and why each skipped shape was skipped."""

    built: int = 0
    existing: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"built": self.built, "existing": self.existing, "skipped": len(self.skipped),
                "skipped_shapes": self.skipped, "seconds": round(self.seconds, 3)}


def shape_dir(root: str | Path, split: str, category: str, shape_id: str) -> Path:
    """Folder of one shape: ``root/split/category/shape_id``."""
    return Path(root) / split / category / shape_id


def is_complete(folder: Path, settings: BuildSettings) -> bool:
    """True when ``folder`` holds a finished shape built with ``settings``."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    if meta.get("format") != FORMAT_VERSION or meta.get("settings") != settings.to_json():
        return False
    return all((folder / f).is_file() for f in meta.get("files", ["?"]))


def _stable_seed(*parts: object) -> int:
    return zlib.crc32("/".join(str(p) for p in parts).encode())


def render_cameras(settings: BuildSettings, key: str, bound_radius: float | None = None) -> dict[str, np.ndarray]:
    """Fixed and random spherical cameras of one shape (deterministic per ``key``).

    Fixed: ``fixed_views`` azimuths evenly spaced from the front, polar 60° (slightly from
    above), at the radius r0 where a sphere of ``bound_radius`` (default: the whole cube,
    sqrt 3) just fits the view. Random: polar uniform in [30°, 110°], azimuth uniform,
    radius 1.0-1.3 times r0; for novel-view training.
    Returns c2w f32 B×4×4 and polar, azimuth, radius f32 B (radians, world units).
    """
    from engine.render.cameras import CUBE_BOUND_RADIUS, fit_radius, spherical_to_c2w

    r0 = fit_radius(settings.fov_deg, bound_radius or CUBE_BOUND_RADIUS)
    nf, nr = settings.fixed_views, settings.random_views
    rng = np.random.default_rng(_stable_seed("cameras", key))
    polar = np.concatenate([np.full(nf, math.radians(60.0)), rng.uniform(math.radians(30.0), math.radians(110.0), nr)])
    azimuth = np.concatenate([2 * np.pi * np.arange(nf) / max(nf, 1), rng.uniform(0.0, 2 * np.pi, nr)])
    radius = np.concatenate([np.full(nf, r0), r0 * rng.uniform(1.0, 1.3, nr)])
    return {"c2w": spherical_to_c2w(polar, azimuth, radius).reshape(-1, 4, 4).astype(np.float32),
            "polar": polar.astype(np.float32), "azimuth": azimuth.astype(np.float32),
            "radius": radius.astype(np.float32)}


def compute_shape_arrays(mesh: trimesh.Trimesh, settings: BuildSettings, key: str,
                         grid_verts: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """Points, SDF and renders of a canonical-frame mesh; ``key`` seeds sampling and cameras."""
    from engine.geometry.sampling import sample_surface
    from engine.geometry.sdf import mesh_sdf

    v = np.asarray(mesh.vertices, dtype=np.float64)
    f = np.asarray(mesh.faces, dtype=np.int64)
    points, normals = sample_surface(v, f, settings.n_points, seed=_stable_seed("points", key))
    out = {"points": {"points": points.astype(np.float32), "normals": normals.astype(np.float32)},
           "sdf": {"sdf": mesh_sdf(v, f, grid_verts).astype(np.float32),
                   "resolution": np.int32(settings.grid_res),
                   "bound": np.float32(grid_bound(settings.grid_res))}}
    if settings.renders:
        from engine.render.renderer import render_mesh

        # "tight": frame the shape's own bounding sphere (about centre 0) so it fills the
        # image whatever its proportions; "cube": the same distance for every shape
        bound = float(np.linalg.norm(v, axis=1).max()) * 1.02 if settings.framing == "tight" else None
        cams = render_cameras(settings, key, bound)
        r = render_mesh(v, f, cams["c2w"], size=settings.render_size, fov_deg=settings.fov_deg)
        alpha = np.where(r["mask"], 255, 0).astype(np.uint8)[..., None]
        out["renders"] = {"rgba": np.concatenate([r["rgb"], alpha], axis=-1), **cams,
                          "fov_deg": np.float32(settings.fov_deg), "n_fixed": np.int32(settings.fixed_views)}
    return out


def _load_task_mesh(task: ShapeTask) -> tuple[trimesh.Trimesh, dict[str, Any]]:
    """The canonical-frame mesh of a task and the meta fields that describe where it came from."""
    from engine.data.procedural import fit_to_cube, generate_shape

    if task.seed is not None:
        shape = generate_shape(task.category, task.seed)
        return shape.mesh, {"seed": shape.seed, "source": "procedural", "params": shape.params,
                            "captions": shape.captions}
    from engine.data.meshio import load_mesh

    kwargs = {} if task.max_faces is None else {"max_faces": task.max_faces}
    mesh = load_mesh(task.source, y_up=task.y_up, **kwargs)
    lo, hi = mesh.bounds
    center = (lo + hi) / 2
    scale = 2.0 / float(np.max(hi - lo))
    fit_to_cube(mesh)
    noun = task.category.replace("_", " ")
    return mesh, {"seed": None, "source": str(task.source), "params": {},
                  "normalization": {"center": [float(c) for c in center], "scale": scale, "y_up": task.y_up},
                  "captions": [f"a {noun}", f"a 3D model of a {noun}", f"{noun}"]}


def build_shape(task: ShapeTask, root: str | Path, settings: BuildSettings, grid_verts: np.ndarray) -> dict[str, Any]:
    """Build one shape into its folder (skipping it when already complete).

    Never raises for a bad input mesh: returns ``{"status": "skipped", "code", "reason"}``.
    Status is "built", "existing" or "skipped".
    """
    folder = shape_dir(root, task.split, task.category, task.shape_id)
    result = {"split": task.split, "category": task.category, "shape_id": task.shape_id}
    if is_complete(folder, settings):
        return {**result, "status": "existing"}
    try:
        mesh, meta = _load_task_mesh(task)
        arrays = compute_shape_arrays(mesh, settings, f"{task.category}/{task.shape_id}", grid_verts)
    except LatentforgeError as exc:
        log.warning("skipping %s/%s (%s): %s", task.category, task.shape_id, task.source or task.seed, exc)
        return {**result, "status": "skipped", "code": exc.code, "reason": exc.message,
                "source": str(task.source or task.seed)}
    except Exception as exc:  # a broken file must not stop a build of thousands
        log.warning("skipping %s/%s (%s): unexpected %s: %s", task.category, task.shape_id, task.source or task.seed,
                    type(exc).__name__, exc)
        return {**result, "status": "skipped", "code": "internal", "reason": f"{type(exc).__name__}: {exc}",
                "source": str(task.source or task.seed)}
    folder.mkdir(parents=True, exist_ok=True)
    replace_atomically(folder / "mesh.ply", lambda fh: fh.write(trimesh.exchange.ply.export_ply(mesh, encoding="binary")))
    for name, data in arrays.items():
        replace_atomically(folder / f"{name}.npz", lambda fh, d=data: np.savez(fh, **d))
    meta.update({"format": FORMAT_VERSION, "shape_id": task.shape_id, "category": task.category,
                 "split": task.split, "n_vertices": int(len(mesh.vertices)), "n_faces": int(len(mesh.faces)),
                 "watertight": bool(mesh.is_watertight), "settings": settings.to_json(), "files": settings.files()})
    replace_atomically(folder / "meta.json", lambda fh: fh.write(json.dumps(meta, indent=1).encode()))
    return {**result, "status": "built"}


# -- worker pool --------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _init_worker(root: str, settings: BuildSettings, grid_verts: np.ndarray) -> None:
    _WORKER.update(root=root, settings=settings, grid_verts=grid_verts)


def _run_in_worker(task: ShapeTask) -> dict[str, Any]:
    return build_shape(task, _WORKER["root"], _WORKER["settings"], _WORKER["grid_verts"])


def grid_bound(resolution: int) -> float:
    """Half side of the SDF grid: one cell wider than the canonical cube on every side.

    Shapes are fitted to [-1, 1]^3 and touch its faces; on a grid that ends there the SDF
    is ~0 at the boundary and extracted surfaces come out open, so the grid reaches one
    cell (2/R) beyond it.
    """
    return 1.0 + 2.0 / resolution


def grid_vertices(resolution: int) -> np.ndarray:
    """Tet-grid vertex positions f32 ``(R+1)^3 × 3`` (engine.geometry.tetgrid order)."""
    from engine.geometry.tetgrid import make_tet_grid

    verts, _ = make_tet_grid(resolution, bound=grid_bound(resolution))
    return verts.numpy().astype(np.float32)


def build_dataset(root: str | Path, tasks: Iterable[ShapeTask], settings: BuildSettings = BuildSettings(),
                  workers: int = 1, progress: bool = True) -> BuildReport:
    """Build every task under ``root`` (in parallel with ``workers`` processes), then write index.json.

    Resumable: complete shapes are left as they are. Returns a BuildReport; shapes that
    could not be used are listed there (and in index.json) with their reason.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tasks = list(tasks)
    report = BuildReport()
    start = time.perf_counter()
    todo = [t for t in tasks if not is_complete(shape_dir(root, t.split, t.category, t.shape_id), settings)]
    report.existing = len(tasks) - len(todo)
    try:
        _run(root, todo, settings, workers, progress, report)
    finally:
        # also after Ctrl-C: the index then lists every shape finished so far
        report.seconds = time.perf_counter() - start
        write_index(root, settings, report)
    return report


def _run(root: Path, todo: list[ShapeTask], settings: BuildSettings, workers: int, progress: bool,
         report: BuildReport) -> None:
    from tqdm import tqdm

    if not todo:
        return
    grid = grid_vertices(settings.grid_res)
    if workers > 1 and not _can_spawn():
        log.warning("--workers ignored: worker processes cannot re-import a __main__ read from stdin; "
                    "building in this process")
        workers = 1
    with tqdm(total=len(todo), desc="building shapes", unit="shape", disable=not progress) as bar:
        if workers <= 1:
            results: Iterator[dict[str, Any]] = (build_shape(t, root, settings, grid) for t in todo)
            _collect(results, report, bar)
        else:
            # spawn: workers must not inherit torch's or Embree's thread state from the parent
            ctx = mp.get_context("spawn")
            with ctx.Pool(min(workers, len(todo)), initializer=_init_worker, initargs=(str(root), settings, grid)) as pool:
                _collect(pool.imap_unordered(_run_in_worker, todo, chunksize=1), report, bar)


def _can_spawn() -> bool:
    """False when spawned workers could not import ``__main__`` (code piped into ``python -``),
    where a Pool would restart crashing workers forever."""
    import sys

    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    return main_file is None or not str(main_file).startswith("<")


def _collect(results: Iterable[dict[str, Any]], report: BuildReport, bar) -> None:
    for r in results:
        if r["status"] == "built":
            report.built += 1
        elif r["status"] == "existing":
            report.existing += 1
        else:
            report.skipped.append({k: r[k] for k in ("split", "category", "shape_id", "source", "code", "reason")})
        bar.set_postfix(skipped=len(report.skipped), refresh=False)
        bar.update(1)


def scan_shapes(root: str | Path) -> list[dict[str, Any]]:
    """Every finished shape under ``root``: dicts with split, category, shape_id, path, captions."""
    root = Path(root)
    out = []
    for split in SPLITS:
        for meta_path in sorted((root / split).glob("*/*/meta.json")):
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, ValueError):
                continue
            folder = meta_path.parent
            if not all((folder / f).is_file() for f in meta.get("files", ["?"])):
                continue
            out.append({"split": split, "category": meta["category"], "shape_id": meta["shape_id"],
                        "path": str(folder.relative_to(root)), "captions": meta.get("captions", []),
                        "source": meta.get("source")})
    return out


def write_index(root: str | Path, settings: BuildSettings, report: BuildReport | None = None) -> dict[str, Any]:
    """Write ``root/index.json`` from the shapes on disk (and the last build's skip list)."""
    root = Path(root)
    shapes = scan_shapes(root)
    splits: dict[str, dict[str, list[str]]] = {}
    for s in shapes:
        splits.setdefault(s["split"], {}).setdefault(s["category"], []).append(s["shape_id"])
    index = {"format": FORMAT_VERSION, "settings": settings.to_json(),
             "counts": {sp: {c: len(ids) for c, ids in cats.items()} for sp, cats in splits.items()},
             "splits": splits, "shapes": shapes,
             "last_build": report.to_json() if report is not None else None}
    replace_atomically(root / "index.json", lambda fh: fh.write(json.dumps(index, indent=1).encode()))
    return index


def procedural_tasks(split: str, categories: Iterable[str], per_category: int) -> list[ShapeTask]:
    """Tasks for the first ``per_category`` seeds of ``split`` in each category."""
    from engine.data.procedural import CATEGORIES, shape_id, split_seeds

    out = []
    for c in categories:
        if c not in CATEGORIES:
            from engine.data.errors import UnknownCategory
            raise UnknownCategory(f"Unknown shape category {c!r}; known: {', '.join(CATEGORIES)}.")
        out += [ShapeTask(split, c, shape_id(c, s), seed=s) for s in split_seeds(split, per_category)]
    return out


def folder_tasks(folder: str | Path, split: str | None = None, layout: str = "auto", y_up: bool = False,
                 max_faces: int | None = None, categories: Iterable[str] | None = None) -> list[ShapeTask]:
    """Tasks for every mesh file of a user folder (see engine.data.meshio.iter_mesh_folder).

    The split is ``split`` when given; otherwise a ModelNet-style ``train``/``test`` parent
    folder decides, and everything else goes to train.
    """
    from engine.data.meshio import iter_mesh_folder

    wanted = set(categories) if categories else None
    out = []
    for category, sid, path in iter_mesh_folder(folder, layout=layout, y_up=y_up):
        if wanted is not None and category not in wanted:
            continue
        sp = split or (path.parent.name if path.parent.name in ("train", "test") else "train")
        out.append(ShapeTask(sp, category, sid, source=str(path), y_up=y_up, max_faces=max_faces))
    return out


def load_point_sets(root: str | Path, split: str, categories: list[str] | None = None,
                    n_points: int = 2048) -> tuple[np.ndarray, list[str], list[str]]:
    """Surface point clouds of a built split, for the point-cloud trainers and metrics.

    Returns points f32 ``S × n_points × 3`` (the first ``n_points`` of each shape's
    uniform-by-area samples, canonical frame), the category of each shape and its id,
    ordered by category then id. Raises DatasetNotFound when nothing matches, and
    DatasetMismatch when shapes hold fewer than ``n_points`` points.
    """
    if split not in SPLITS:
        raise InvalidSplit(f"Unknown split {split!r}; use train, val or test.")
    root = Path(root)
    index_path = root / "index.json"
    if index_path.is_file():
        shapes = json.loads(index_path.read_text()).get("shapes", [])
    else:
        shapes = scan_shapes(root)
    shapes = [s for s in shapes if s["split"] == split and (not categories or s["category"] in categories)]
    if not shapes:
        raise DatasetNotFound(f"No built shapes for split {split!r}"
                              + (f" and categories {list(categories)}" if categories else "") + f" under {root}.")
    shapes.sort(key=lambda s: (s["category"], s["shape_id"]))
    pts = np.empty((len(shapes), n_points, 3), dtype=np.float32)
    for i, s in enumerate(shapes):
        with np.load(root / s["path"] / "points.npz") as data:
            p = data["points"]
        if len(p) < n_points:
            raise DatasetMismatch(f"{s['path']} holds {len(p)} points, fewer than the {n_points} asked for.")
        pts[i] = p[:n_points]
    return pts, [s["category"] for s in shapes], [s["shape_id"] for s in shapes]


def export_shapes(out: str | Path, split: str, per_category: int, fmt: str = "ply",
                  categories: Iterable[str] | None = None, y_up: bool = False, progress: bool = True) -> list[Path]:
    """Write procedural shapes as plain mesh files ``out/<category>/<shape_id>.<fmt>``.

    ``fmt``: ply, obj, glb or stl. Meshes are in the canonical frame (+Z up, -Y front,
    [-1, 1]^3) unless ``y_up``: then (x, y, z) -> (x, z, -y), the +Y up, +Z front frame that
    glTF prescribes and Blender's OBJ/glTF importers expect by default
    (``engine.data.meshio.load_mesh(path, y_up=True)`` undoes it).
    """
    from tqdm import tqdm

    from engine.data.errors import InvalidExportFormat
    from engine.data.procedural import CATEGORIES, generate_shape

    if fmt not in ("ply", "obj", "glb", "stl"):
        raise InvalidExportFormat(f"Unknown export format {fmt!r}; use ply, obj, glb or stl.")
    tasks = procedural_tasks(split, list(categories or CATEGORIES), per_category)
    written = []
    for t in tqdm(tasks, desc=f"exporting {fmt}", unit="shape", disable=not progress):
        folder = Path(out) / t.category
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{t.shape_id}.{fmt}"
        mesh = generate_shape(t.category, t.seed).mesh
        if y_up:
            mesh.apply_transform(trimesh.transformations.rotation_matrix(-np.pi / 2, [1, 0, 0]))
        data = mesh.export(file_type=fmt)
        payload = data.encode() if isinstance(data, str) else data
        replace_atomically(path, lambda fh, b=payload: fh.write(b))
        written.append(path)
    return written
