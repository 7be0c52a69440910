"""Point-cloud normalizations of LION / PointFlow, with their inverses.

Two conventions, as in LION's ``datasets/pointflow_datasets.py``:

- per shape, bounding box (``normalize_box``): centre = midpoint of the axis-aligned
  bounding box, scale = half of its largest side, so every shape fits [-1, 1]^3 and
  touches it along its longest axis;
- global (``normalize_global``): one mean (per axis) and one standard deviation (over all
  coordinates of all points of all shapes, or per axis) for a whole data set, so shapes
  keep their relative sizes; the statistics are computed on the training set and reused.

Both return the statistics so :func:`denormalize` can map model outputs back:
``points = normalized * scale + center``. Arrays may be numpy arrays or torch tensors;
the result has the input's type. Shapes: ``N × 3`` (one shape) or ``S × N × 3`` (a set).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.geometry.errors import BadArrayShape, EmptyMesh

ArrayLike = Any  # numpy.ndarray or torch.Tensor


def _is_torch(x: Any) -> bool:
    return hasattr(x, "detach") and hasattr(x, "dim")


def _check(points: ArrayLike) -> None:
    if points.ndim not in (2, 3) or points.shape[-1] != 3:
        raise BadArrayShape(f"points must be N×3 or S×N×3, got shape {tuple(points.shape)}.")
    if points.shape[-2] == 0:
        raise EmptyMesh("Cannot normalize a point set with no points.")


def normalize_box(points: ArrayLike, eps: float = 1e-12) -> tuple[ArrayLike, ArrayLike, ArrayLike]:
    """Per-shape bounding-box normalization to [-1, 1]^3 (LION ``normalize_shape_box``).

    Args:
        points: ``N × 3`` or ``S × N × 3``.
        eps: floor of the scale, so a single point or a flat set does not divide by zero.

    Returns:
        normalized (same shape), center ``1 × 3`` / ``S × 1 × 3``, scale ``1 × 1`` /
        ``S × 1 × 1`` (half the largest bounding-box side).
    """
    _check(points)
    if _is_torch(points):
        hi = points.amax(dim=-2, keepdim=True)
        lo = points.amin(dim=-2, keepdim=True)
        scale = ((hi - lo).amax(dim=-1, keepdim=True) / 2).clamp_min(eps)
    else:
        hi = points.max(axis=-2, keepdims=True)
        lo = points.min(axis=-2, keepdims=True)
        scale = np.maximum((hi - lo).max(axis=-1, keepdims=True) / 2, eps)
    center = (hi + lo) / 2
    return (points - center) / scale, center, scale


def global_stats(points: ArrayLike, per_axis: bool = False) -> tuple[ArrayLike, ArrayLike]:
    """Data-set mean and std (LION's global normalization statistics).

    Args:
        points: ``S × N × 3`` (or ``N × 3``) training points.
        per_axis: one std per axis instead of one over all coordinates. LION's default
            (``normalize_std_per_axis=False``) takes the std of all raw coordinates pooled
            together, as done here, so normalized data has a pooled std slightly below 1.

    Returns:
        mean ``1 × 1 × 3``, std ``1 × 1 × 1`` (or ``1 × 1 × 3`` when ``per_axis``).
    """
    _check(points)
    flat = points.reshape(-1, 3)
    if _is_torch(points):
        mean = flat.mean(dim=0).reshape(1, 1, 3)
        std = flat.std(dim=0, unbiased=False).reshape(1, 1, 3) if per_axis \
            else flat.reshape(-1).std(unbiased=False).reshape(1, 1, 1)
    else:
        mean = flat.mean(axis=0).reshape(1, 1, 3)
        std = flat.std(axis=0).reshape(1, 1, 3) if per_axis else flat.reshape(-1).std().reshape(1, 1, 1)
    return mean, std


def normalize_global(points: ArrayLike, mean: ArrayLike | None = None, std: ArrayLike | None = None,
                     per_axis: bool = False) -> tuple[ArrayLike, ArrayLike, ArrayLike]:
    """Global mean/std normalization: ``(points - mean) / std``.

    Args:
        points: ``S × N × 3`` or ``N × 3``.
        mean, std: statistics from :func:`global_stats` on the training set; computed from
            ``points`` when omitted.
        per_axis: see :func:`global_stats` (only used when computing the statistics).

    Returns:
        normalized (same shape as ``points``), mean, std (``1 × 1 × 3``, ``1 × 1 × 1|3``).
    """
    _check(points)
    if mean is None or std is None:
        mean, std = global_stats(points, per_axis=per_axis)
    normalized = (points - mean) / std
    if points.ndim == 2:
        normalized = normalized[0]
    return normalized, mean, std


def denormalize(normalized: ArrayLike, center: ArrayLike, scale: ArrayLike) -> ArrayLike:
    """Inverse of both normalizations: ``normalized * scale + center``.

    ``center``/``scale`` are the (center, scale) of :func:`normalize_box` or the
    (mean, std) of :func:`normalize_global`; shapes broadcast as returned there.
    """
    out = normalized * scale + center
    if normalized.ndim == 2 and out.ndim == 3:
        out = out[0]
    return out
