"""Training data for the point model: point sets per shape with their category.

Two sources:
- a dataset folder built by ``latentforge dataset build`` (``engine.data.dataset.load_point_sets``);
- ``procedural``: shapes drawn directly with ``engine.data.procedural.generate_shape`` (train
  split seeds for training, val for validation; the test split is for evaluation only) and
  sampled uniformly on their surface; cached per category as ``.npz`` in a cache folder.

Each shape keeps ``pool`` surface points so every epoch can draw a different 2048 subset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass
class PointSets:
    points: np.ndarray          # S×P×3 float32 (P >= points drawn per step)
    labels: np.ndarray          # S int64 index into ``categories``
    categories: list[str]

    def __len__(self) -> int:
        return len(self.points)

    def fingerprint(self) -> str:
        """A short hash of the points and labels: tells caches derived from them apart."""
        import hashlib
        h = hashlib.sha1(np.ascontiguousarray(self.points[:, :64]).tobytes())
        h.update(np.ascontiguousarray(self.labels).tobytes())
        return h.hexdigest()[:16]

    def batch(self, idx: np.ndarray, n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Points B×n×3 (a fresh random subset of each shape's pool) and labels B."""
        pool = self.points.shape[1]
        sel = np.stack([rng.choice(pool, n, replace=pool < n) for _ in idx])
        pts = np.take_along_axis(self.points[idx], sel[..., None], axis=1)
        return torch.from_numpy(pts.astype(np.float32)), torch.from_numpy(self.labels[idx].astype(np.int64))


def _sample_surface(mesh, n: int, seed: int) -> np.ndarray:
    try:
        from engine.geometry.sampling import sample_surface
        pts, _ = sample_surface(np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.int64), n, seed=seed)
        return np.asarray(pts, np.float32)
    except ImportError:
        import trimesh
        pts, _ = trimesh.sample.sample_surface(mesh, n, seed=seed)
        return np.asarray(pts, np.float32)


def available_categories() -> list[str]:
    """Procedural categories whose generator works right now."""
    from engine.data import procedural
    ok = []
    for c in procedural.CATEGORIES:
        try:
            procedural.generate_shape(c, procedural.split_seeds("train", 1)[0])
            ok.append(c)
        except Exception:  # a category still being written by the data engineer
            continue
    return ok


def procedural_category(category: str, split: str, n_shapes: int, pool: int, cache: Path | None) -> np.ndarray:
    """``n_shapes`` × ``pool`` × 3 surface points of the split's first seeds (cached).

    A cached file is used only while the generator still draws its first shape exactly:
    a category whose generator changed since is drawn again (a stale car cache once trained
    a whole model on cars the generator no longer makes).
    """
    from engine.data import procedural

    def draw(seed: int) -> np.ndarray:
        return _sample_surface(procedural.generate_shape(category, seed).mesh, pool, seed)

    seeds = procedural.split_seeds(split, n_shapes)
    path = cache / f"{split}_{category}_{n_shapes}_{pool}.npz" if cache else None
    if path is not None and path.is_file():
        pts = np.load(path)["points"]
        if pts.shape == (n_shapes, pool, 3) and np.array_equal(pts[0], draw(seeds[0])):
            return pts
    pts = np.stack([draw(s) for s in seeds])
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, points=pts)
    return pts


def load_procedural(categories: list[str], split: str, n_shapes: int, pool: int = 4096,
                    cache: Path | None = None) -> PointSets:
    pts, labels = [], []
    for i, c in enumerate(categories):
        p = procedural_category(c, split, n_shapes, pool, cache)
        pts.append(p)
        labels.append(np.full(len(p), i, np.int64))
    return PointSets(np.concatenate(pts), np.concatenate(labels), list(categories))


def load_dataset_dir(root: str | Path, split: str, categories: list[str] | None = None,
                     n_points: int = 2048) -> PointSets:
    """Point sets of a dataset folder built by ``latentforge dataset build``."""
    from engine.data.dataset import load_point_sets
    pts, cats, _ids = load_point_sets(root, split, categories=categories, n_points=n_points)
    names = list(categories) if categories else sorted(set(cats))
    labels = np.array([names.index(c) for c in cats], np.int64)
    return PointSets(np.asarray(pts, np.float32), labels, names)
