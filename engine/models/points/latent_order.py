"""A canonical order of the latent points: each shape's M latent points assigned one-to-one
to the M points of a fixed template by optimal assignment (squared distance).

The encoder's latent points come in farthest-point-sampling order, which starts at a random
point, so the point prior saw an exchangeable set and had to learn, from attention over
smooth embeddings alone, which of two nearby noisy points goes where. At low noise it moved
neighbours together (MODEL.md, Training step 7). Ordered by an assignment to one template,
latent point i lies near template point i, so the prior can give every slot its own
learned embedding (``point_prior.slot_order``) and each token knows roughly where it
belongs. The VAE is unchanged: its decoder treats the latent points as a set.

The template is one for all categories (an optimal-assignment barycenter of training
latents), so a slot means a region of the canonical frame for any condition, a category now
or a CLIP embedding later. scipy's ``linear_sum_assignment`` solves each M×M assignment
(M = 256: about 6 ms on this CPU); no torch library does batched exact assignment.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.cluster.vq import kmeans2
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist


def assign_to_template(xyz: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Permutation (M,) int64 such that ``xyz[perm]`` (M×3) is matched slot by slot to
    ``template`` (M×3): the one-to-one assignment of least total squared distance."""
    _, col = linear_sum_assignment(cdist(template, xyz, "sqeuclidean"))
    return col.astype(np.int64)


def slot_permutation(xyz: torch.Tensor, template: torch.Tensor) -> torch.Tensor:
    """Permutations B×M (long, on ``xyz``'s device) that put latent points ``xyz`` (B×M×3,
    raw latent units) in template order (``template`` M×3, same units)."""
    t = template.detach().double().cpu().numpy()
    x = xyz.detach().double().cpu().numpy()
    perm = np.stack([assign_to_template(x[i], t) for i in range(x.shape[0])]) if len(x) else \
        np.zeros((0, t.shape[0]), np.int64)
    return torch.from_numpy(perm).to(xyz.device)


def apply_permutation(h: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """``h`` B×M×P reordered along M by ``perm`` (B×M); differentiable in ``h``."""
    return torch.gather(h, 1, perm.unsqueeze(-1).expand(-1, -1, h.shape[-1]))


def fit_template(xyz: np.ndarray, rounds: int = 3, init_shapes: int = 220, seed: int = 0) -> np.ndarray:
    """A template M×3 for latent point sets ``xyz`` (S×M×3, raw units): k-means of the pooled
    points of ``init_shapes`` of them, then ``rounds`` of assigning every set to the template
    and moving each template point to the mean of the points assigned to it (a barycenter
    under optimal assignment). Deterministic for a given ``seed``."""
    s, m, _ = xyz.shape
    rng = np.random.default_rng(seed)
    pool = xyz[rng.choice(s, min(s, init_shapes), replace=False)].reshape(-1, 3).astype(np.float64)
    template, _ = kmeans2(pool, m, iter=20, minit="++", seed=seed)
    for _ in range(rounds):
        acc = np.zeros_like(template)
        for i in range(s):
            acc += xyz[i][assign_to_template(xyz[i], template)]
        template = acc / s
    return template.astype(np.float32)
