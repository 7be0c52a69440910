"""Diffusion prior on the point-structured latents, conditioned on the global latent.

A transformer over the M latent points (a few hundred, so full attention is cheap) with
adaptive LayerNorm driven by one vector: timestep + global latent + condition. Attention,
not kNN convolutions, because the noisy latent points carry no reliable neighbourhoods at
high noise levels, and because it is dense matmuls on CPU and GPU alike.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import PointPriorConfig
from .layers import AdaLNBlock, timestep_embedding


class PointPrior(nn.Module):
    """eps(h_t B×M×P, t B, z B×D, cond B×C) -> B×M×P."""

    def __init__(self, point_dim: int, global_dim: int, cond_dim: int, cfg: PointPriorConfig) -> None:
        super().__init__()
        w = cfg.width
        self.inp = nn.Sequential(nn.Linear(point_dim, w), nn.GELU(), nn.Linear(w, w))
        self.temb = nn.Sequential(nn.Linear(128, w), nn.SiLU(), nn.Linear(w, w))
        self.zemb = nn.Sequential(nn.Linear(global_dim, w), nn.SiLU(), nn.Linear(w, w))
        self.cemb = nn.Sequential(nn.Linear(cond_dim, w), nn.SiLU(), nn.Linear(w, w))
        self.blocks = nn.ModuleList([AdaLNBlock(w, cfg.heads, w) for _ in range(cfg.layers)])
        self.norm = nn.LayerNorm(w, elementwise_affine=False, eps=1e-6)
        self.out_mod = nn.Linear(w, 2 * w)
        self.out = nn.Linear(w, point_dim)
        nn.init.zeros_(self.out_mod.weight)
        nn.init.zeros_(self.out_mod.bias)

    def forward(self, h: torch.Tensor, t: torch.Tensor, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        c = nn.functional.silu(self.temb(timestep_embedding(t, 128)) + self.zemb(z) + self.cemb(cond))
        x = self.inp(h)
        for blk in self.blocks:
            x = blk(x, c)
        scale, shift = self.out_mod(c).unsqueeze(1).chunk(2, -1)
        return self.out(self.norm(x) * (1 + scale) + shift)
