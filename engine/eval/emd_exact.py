"""Exact earth mover's distance between equal-size point clouds (numpy + scipy only).

Kept free of torch so that worker processes started for EMD (spawn) import in a moment.
EMD here is the mean Euclidean distance of the optimal one-to-one matching, solved with
``scipy.optimize.linear_sum_assignment`` (O(N^3)).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist


def emd_pair(x: np.ndarray, y: np.ndarray) -> float:
    """Exact EMD of two clouds x, y (N×3 each, float64) in their units."""
    cost = cdist(x, y)  # Euclidean distances
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].mean())


def emd_row(x: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """EMD of one cloud x (N×3) to each cloud of ys (K×N×3) -> (K,) float64."""
    return np.array([emd_pair(x, y) for y in ys], dtype=np.float64)
