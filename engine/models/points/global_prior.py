"""Diffusion prior on the global shape latent: a ResNet-MLP epsilon model.

The global latent is a vector, so attention buys nothing; residual MLP blocks whose
activations are shifted/scaled by (timestep, condition) are enough and cost ~1 ms per
batch on CPU.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import GlobalPriorConfig
from .layers import timestep_embedding


class _ResBlock(nn.Module):
    def __init__(self, width: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width * 2)
        self.mod = nn.Linear(width, width * 2)
        self.fc2 = nn.Linear(width * 2, width)
        self.drop = nn.Dropout(dropout)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        scale, shift = self.mod(c).chunk(2, -1)
        h = self.norm(x) * (1 + scale) + shift
        return x + self.fc2(self.drop(nn.functional.gelu(self.fc1(h))))


class GlobalPrior(nn.Module):
    """eps(z_t B×D, t B, cond B×C) -> B×D."""

    def __init__(self, latent_dim: int, cond_dim: int, cfg: GlobalPriorConfig) -> None:
        super().__init__()
        w = cfg.width
        self.inp = nn.Linear(latent_dim, w)
        self.temb = nn.Sequential(nn.Linear(128, w), nn.SiLU(), nn.Linear(w, w))
        self.cemb = nn.Sequential(nn.Linear(cond_dim, w), nn.SiLU(), nn.Linear(w, w))
        self.blocks = nn.ModuleList([_ResBlock(w, cfg.dropout) for _ in range(cfg.blocks)])
        self.out = nn.Sequential(nn.LayerNorm(w), nn.Linear(w, latent_dim))

    def forward(self, z: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        c = nn.functional.silu(self.temb(timestep_embedding(t, 128)) + self.cemb(cond))
        x = self.inp(z)
        for blk in self.blocks:
            x = blk(x, c)
        return self.out(x)
