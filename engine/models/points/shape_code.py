"""A learned global shape code: the hierarchy's top level when the VAE's global latent collapsed.

LION generates a global shape latent first and the point latents conditioned on it, so the
point prior only has to place points for a shape that is already decided. Our VAE's global
latent ``z`` collapsed (its posterior means spread by 0.014 against a posterior std of 0.94,
and decoding with the latents of other shapes' ``z`` changes nothing: MODEL.md), so the
point prior was in effect conditioned on noise and had to invent the whole layout alone.

The shape code replaces ``z`` as the priors' global latent. It is a small autoencoder of the
*latent points' layout*: a PointNet over the M latent xyz (B×M×3, canonical frame) gives a
code in (-1, 1)^C; an MLP decodes the code, with Gaussian noise added in training, back to
M points, scored by Chamfer against the clean layout. The noise keeps nearby codes
decoding to nearby layouts, so the global prior's small errors stay small; the tanh keeps
the code bounded without a KL weight to tune. With ``point_prior.layout_attention`` the
point prior cross-attends to the decoded layout, in sampling too. The VAE and its latent
space are unchanged: trained point priors stay valid and are fine-tuned to use the code.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import mlp


class ShapeCodeEncoder(nn.Module):
    """Latent point xyz B×M×3 (canonical units) -> shape code B×C in (-1, 1)."""

    def __init__(self, code_dim: int, width: int = 128) -> None:
        super().__init__()
        self.point = mlp(3, width // 2, width, 2 * width)
        self.head = mlp(2 * width, 2 * width, code_dim)

    def forward(self, xyz: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.head(self.point(xyz).amax(1)))


class LayoutDecoder(nn.Module):
    """Shape code B×C -> B×M×3 latent point layout: trained in the code stage; with
    ``layout_attention`` the point prior cross-attends to its output."""

    def __init__(self, code_dim: int, n_points: int, width: int = 512) -> None:
        super().__init__()
        self.n_points = n_points
        self.net = mlp(code_dim, width, width, 3 * n_points)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return self.net(code).view(code.shape[0], self.n_points, 3)
