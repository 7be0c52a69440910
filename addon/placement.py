"""Where generated objects go: rows at the 3D cursor, and overlap-free scattering for Populate.

numpy only (no bpy), so it is testable anywhere. Footprints are axis-aligned boxes in XY:
objects stand on the ground or on a surface, so two objects overlap only if their
footprints do; checking XY alone is the stricter test.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def row_offset(index: int, count: int, spacing: float) -> tuple[float, float, float]:
    """X offset of result ``index`` of ``count`` in a row centred on the cursor."""
    return ((index - (count - 1) / 2.0) * spacing, 0.0, 0.0)


def interpolation_slots(start: Sequence[float], end: Sequence[float], size_a: float, size_b: float,
                        count: int) -> list[tuple[tuple[float, float, float], float]]:
    """(location, scale) of each of ``count`` interpolated shapes, in a row between two objects.

    Shape ``i`` sits at fraction ``(i + 1) / (count + 1)`` of the way from ``start`` to ``end``
    (strictly between the two objects, never on them) and is scaled from ``size_a`` (the first
    object's half size, for shape 0) to ``size_b`` (the second's, for the last shape): the
    engine returns shapes in the canonical frame, fitted to [-1, 1]^3.
    """
    a, b = np.asarray(start, dtype=np.float64), np.asarray(end, dtype=np.float64)
    out = []
    for i in range(count):
        t = (i + 1) / (count + 1)
        w = i / (count - 1) if count > 1 else 0.0
        loc = a + (b - a) * t
        out.append(((float(loc[0]), float(loc[1]), float(loc[2])), float(size_a + (size_b - size_a) * w)))
    return out


def rotated_footprint(bmin: Sequence[float], bmax: Sequence[float], scale: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """XY box (min, max offsets from the object origin) of local bounds scaled and turned about Z."""
    xs = (bmin[0] * scale, bmax[0] * scale)
    ys = (bmin[1] * scale, bmax[1] * scale)
    corners = np.array([(x, y) for x in xs for y in ys], dtype=np.float64)
    c, s = math.cos(angle), math.sin(angle)
    rot = corners @ np.array([[c, s], [-s, c]])
    return rot.min(axis=0), rot.max(axis=0)


class SurfaceSampler:
    """Random points on the up-facing triangles of a world-space surface, weighted by area."""

    def __init__(self, triangles: np.ndarray, min_up: float = 0.5) -> None:
        tris = np.asarray(triangles, dtype=np.float64).reshape(-1, 3, 3)
        normals = np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0])
        area2 = np.linalg.norm(normals, axis=1)
        up = np.where(area2 > 0, normals[:, 2] / np.maximum(area2, 1e-30), 0.0)
        keep = (up >= min_up) & (area2 > 0)
        if not keep.any():
            raise ValueError("The target surface has no upward-facing faces to place objects on.")
        self.tris = tris[keep]
        weights = area2[keep]
        self.cdf = np.cumsum(weights) / weights.sum()

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        i = int(np.searchsorted(self.cdf, rng.random(), side="right"))
        i = min(i, len(self.tris) - 1)
        u, v = rng.random(2)
        if u + v > 1.0:
            u, v = 1.0 - u, 1.0 - v
        a, b, c = self.tris[i]
        return a + u * (b - a) + v * (c - a)


class Packer:
    """Places footprints around a centre (a disc) or on a surface so that none overlap.

    ``spacing`` is the minimum gap between footprints. When a spot cannot be found the
    disc grows a little (by ``growth`` per round of ``attempts``), so a crowded area
    spreads out instead of failing; after ``rounds`` rounds ``place`` gives up.
    """

    def __init__(self, center: Sequence[float], radius: float, spacing: float, seed: int = 0,
                 surface: SurfaceSampler | None = None, attempts: int = 100, rounds: int = 4,
                 growth: float = 0.5) -> None:
        self.center = np.asarray(center, dtype=np.float64)
        self.radius = max(float(radius), 1e-3)
        self.spacing = max(float(spacing), 0.0)
        self.rng = np.random.default_rng(seed)
        self.surface = surface
        self.attempts, self.rounds, self.growth = attempts, rounds, growth
        self.boxes: list[tuple[np.ndarray, np.ndarray]] = []

    def _candidate(self, radius: float) -> np.ndarray:
        if self.surface is not None:
            return self.surface.sample(self.rng)
        r = radius * math.sqrt(self.rng.random())
        t = 2 * math.pi * self.rng.random()
        return self.center + np.array([r * math.cos(t), r * math.sin(t), 0.0])

    def fits(self, lo: np.ndarray, hi: np.ndarray) -> bool:
        """True when the XY box [lo, hi] keeps ``spacing`` from every placed box."""
        gap = self.spacing
        for blo, bhi in self.boxes:
            if lo[0] < bhi[0] + gap and hi[0] > blo[0] - gap and lo[1] < bhi[1] + gap and hi[1] > blo[1] - gap:
                return False
        return True

    def place(self, fp_min: np.ndarray, fp_max: np.ndarray) -> np.ndarray | None:
        """A free location (x, y, z of the ground point) for a footprint, or None; records it."""
        for round_ in range(self.rounds):
            radius = self.radius * (1.0 + self.growth * round_)
            for _ in range(self.attempts):
                p = self._candidate(radius)
                lo, hi = p[:2] + fp_min, p[:2] + fp_max
                if self.fits(lo, hi):
                    self.boxes.append((lo, hi))
                    return p
        return None


def boxes_overlap(boxes: list[tuple[np.ndarray, np.ndarray]]) -> bool:
    """True if any two (min, max) boxes (any dimension) intersect with positive volume."""
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            a0, a1 = boxes[i]
            b0, b1 = boxes[j]
            if np.all(a0 < b1) and np.all(b0 < a1):
                return True
    return False
