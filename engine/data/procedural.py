"""Procedural object shapes: the default training set, evaluation ground truth, and the
"procedural" model users can call directly.

``generate_shape(category, seed)`` draws a parameter dict from the category's space
(numpy Generator seeded from both the category name and the seed), builds the solid from
primitives united with manifold3d, and fits it to the canonical frame: +Z up, front
towards -Y, bounding box centred at the origin and scaled so its longest side spans 2
(so it lies in [-1, 1]^3). The result is watertight and manifold by construction.

Seeds of the splits are disjoint ranges (see ``SPLIT_RANGES``); the test split is never
used for training.
"""

from __future__ import annotations

import importlib
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import trimesh

from engine.data.errors import InvalidShapeParams, InvalidSplit, UnknownCategory
from engine.data.shapes.space import apply_overrides, describe_space, sample_space

CATEGORIES: tuple[str, ...] = ("airplane", "bench", "bottle", "car", "chair", "lamp", "mug", "shelf", "sofa",
                               "table", "vase")

# [start, stop) seed range of each split; wide enough for any dataset we build here.
SPLIT_RANGES: dict[str, tuple[int, int]] = {
    "train": (0, 1_000_000),
    "val": (1_000_000, 1_100_000),
    "test": (2_000_000, 2_100_000),
}


@dataclass
class ProceduralShape:
    """One generated shape: mesh in the canonical frame plus its description."""

    mesh: trimesh.Trimesh
    category: str
    seed: int
    params: dict[str, Any]
    captions: list[str] = field(default_factory=list)
    shape_id: str = ""


def _module(category: str):
    if category not in CATEGORIES:
        raise UnknownCategory(f"Unknown shape category {category!r}; known: {', '.join(CATEGORIES)}.",
                              details={"category": category})
    return importlib.import_module(f"engine.data.shapes.{category}")


def shape_id(category: str, seed: int) -> str:
    """Stable id of a procedural shape, e.g. ``chair-000123``."""
    return f"{category}-{seed:06d}"


def rng_for(category: str, seed: int) -> np.random.Generator:
    """The Generator that draws a shape's parameters; depends on both category and seed."""
    return np.random.default_rng([zlib.crc32(category.encode()), int(seed)])


def sample_params(category: str, seed: int, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON-safe parameter dict of ``(category, seed)``, with ``overrides`` applied and checked."""
    mod = _module(category)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidShapeParams(f"Seed must be a non-negative integer, got {seed!r}.")
    params = sample_space(rng_for(category, int(seed)), mod.SPACE)
    return apply_overrides(params, overrides, mod.SPACE, category)


def parameter_space(category: str) -> dict[str, Any]:
    """JSON-safe description of a category's parameters: choices or {"range": [lo, hi]}."""
    return describe_space(_module(category).SPACE)


def fit_to_cube(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """Centre the bounding box at the origin and scale uniformly so its longest side is 2 (in place)."""
    lo, hi = mesh.bounds
    scale = 2.0 / float(np.max(hi - lo))
    mesh.vertices = (mesh.vertices - (lo + hi) / 2.0) * scale
    return mesh


def generate_shape(category: str, seed: int, overrides: dict[str, Any] | None = None) -> ProceduralShape:
    """Build shape ``seed`` of ``category``; identical inputs give an identical mesh.

    Returns a ProceduralShape whose mesh is watertight, manifold, +Z up, front -Y, fitted
    to [-1, 1]^3 (float64 vertices V x 3, int64 faces F x 3, a few thousand faces).
    Raises UnknownCategory or InvalidShapeParams for bad input.
    """
    mod = _module(category)
    params = sample_params(category, seed, overrides)
    solid = mod.build(params)
    out = solid.to_mesh()
    mesh = trimesh.Trimesh(np.asarray(out.vert_properties[:, :3], dtype=np.float64),
                           np.asarray(out.tri_verts, dtype=np.int64), process=False)
    fit_to_cube(mesh)
    return ProceduralShape(mesh=mesh, category=category, seed=int(seed), params=params,
                           captions=mod.captions(params), shape_id=shape_id(category, int(seed)))


def split_seeds(split: str, n: int) -> list[int]:
    """The first ``n`` seeds of ``split`` ("train", "val" or "test"); ranges never overlap."""
    if split not in SPLIT_RANGES:
        raise InvalidSplit(f"Unknown split {split!r}; use train, val or test.")
    start, stop = SPLIT_RANGES[split]
    if n < 0 or n > stop - start:
        raise InvalidSplit(f"{split} holds at most {stop - start} shapes per category, asked for {n}.")
    return list(range(start, start + n))
