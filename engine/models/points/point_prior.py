"""Diffusion prior on the point-structured latents, conditioned on the global latent.

A transformer over the M latent points (a few hundred, so full attention is cheap) with
adaptive LayerNorm driven by one vector: timestep + global latent + condition. Attention,
not kNN convolutions, because the noisy latent points carry no reliable neighbourhoods at
high noise levels, and because it is dense matmuls on CPU and GPU alike.

With ``layout_attention`` the latent points also cross-attend, after every block, to a
coarse layout of the shape (B×L×3 points, normalized like the latent xyz): the layout the
shape code decodes to (``shape_code.py``). Through the adaptive LayerNorm alone the code
went unused: 1248 steps of fine-tuning left the x0 error at every noise level where it was
(MODEL.md). Attention lets each noisy latent point look up the layout points near it. The
cross-attention's output is gated by a zero-initialised, condition-driven scale (as
adaLN-Zero), so priors trained without it start computing exactly what they did.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import PointPriorConfig
from .layers import AdaLNBlock, mlp, timestep_embedding


class LayoutCrossAttention(nn.Module):
    """Tokens B×M×W attend to layout tokens B×L×W; the result is added through a gate
    driven by the conditioning vector c B×W that starts at zero."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.gate = nn.Linear(width, width)
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return x + self.gate(c).unsqueeze(1) * self.attn(self.norm(x), tokens, tokens, need_weights=False)[0]


class PointPrior(nn.Module):
    """eps(h_t B×M×P, t B, z B×D, cond B×C[, layout B×L×3]) -> B×M×P."""

    def __init__(self, point_dim: int, global_dim: int, cond_dim: int, cfg: PointPriorConfig) -> None:
        super().__init__()
        w = cfg.width
        if cfg.layout_attention:
            self.layout_embed = mlp(3, w, w)
            self.cross = nn.ModuleList([LayoutCrossAttention(w, cfg.heads) for _ in range(cfg.layers)])
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

    def forward(self, h: torch.Tensor, t: torch.Tensor, z: torch.Tensor, cond: torch.Tensor,
                layout: torch.Tensor | None = None) -> torch.Tensor:
        c = nn.functional.silu(self.temb(timestep_embedding(t, 128)) + self.zemb(z) + self.cemb(cond))
        x = self.inp(h)
        cross = getattr(self, "cross", None)
        if (cross is None) != (layout is None):
            raise ValueError("a layout is given exactly when the point prior has layout_attention")
        tokens = self.layout_embed(layout) if cross is not None else None
        for i, blk in enumerate(self.blocks):
            x = blk(x, c)
            if cross is not None:
                x = cross[i](x, tokens, c)
        scale, shift = self.out_mod(c).unsqueeze(1).chunk(2, -1)
        return self.out(self.norm(x) * (1 + scale) + shift)
