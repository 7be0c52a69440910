"""Stray-point removal for decoded point clouds.

The decoder folds a few output points per latent point; where a prior sample puts a latent
point or its features slightly off, some of them land away from the surface. A few such
points matter far beyond their number: every consumer that frames a shape by its bounding
box (the box-normalized metrics, the add-on's placement, a mesh reconstruction) is
stretched by them. The decoder can draw any number of points, so we draw a few more than
asked, drop those whose neighbourhood is unusually sparse (a statistical outlier test on
the mean distance to the k nearest neighbours, as in PCL's StatisticalOutlierRemoval),
and keep a random subset of the rest so the density stays area-uniform.
"""

from __future__ import annotations

import torch


def knn_spread(points: torch.Tensor, k: int) -> torch.Tensor:
    """Mean distance of every point to its ``k`` nearest neighbours: points B×N×3 -> B×N."""
    out = []
    for p in points:                                   # one N×N distance matrix at a time
        d = torch.cdist(p, p)
        out.append(d.topk(min(k + 1, p.shape[0]), largest=False).values[:, 1:].mean(1))
    return torch.stack(out)


def remove_outliers(points: torch.Tensor, n_out: int, k: int = 16, std_ratio: float = 1.5,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Keep ``n_out`` of the B×N×3 ``points`` (N >= n_out), dropping sparse outliers first.

    A point is an outlier when its mean k-NN distance exceeds the shape's mean by more than
    ``std_ratio`` standard deviations. ``n_out`` points are drawn at random from the rest;
    if fewer remain, the least sparse outliers fill up. Returns B×n_out×3.
    """
    b, n, _ = points.shape
    if n_out > n:
        raise ValueError(f"cannot keep {n_out} of {n} points")
    spread = knn_spread(points, k)
    thr = spread.mean(1, keepdim=True) + std_ratio * spread.std(1, keepdim=True)
    keep = spread <= thr
    r = torch.rand(b, n, device=points.device, generator=generator)
    # Kept points sort first in random order; outliers after them, least sparse first.
    key = torch.where(keep, r, 1.0 + spread / spread.amax(1, keepdim=True).clamp(min=1e-12))
    idx = key.argsort(1)[:, :n_out]
    return torch.gather(points, 1, idx.unsqueeze(-1).expand(-1, -1, 3))
