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

With ``local_knn`` every latent point's input token also gets an edge feature of its k
nearest neighbours (offsets and distances through a small MLP, max- and mean-pooled, as in
DGCNN's EdgeConv). Attention compares smooth embeddings of whole tokens, so two latent
points a spacing apart look alike to it; at low noise levels the denoiser then moved
neighbours together and left the decoded surface in clumps and holes. At high noise the
neighbourhoods are noise, and the network learns to ignore them there (the timestep
reaches every block through the adaptive LayerNorm). The branch's output layer starts at
zero, so a prior trained without it starts computing exactly what it did.

With ``self_condition`` the input token of every latent point is computed from its noisy
value and the previous x0 estimate of it, concatenated (zeros when there is none): the
self-conditioning of Chen et al. (2023). The sampler feeds each step the estimate of the step
before; training feeds it for half of each batch, estimated by the same network without
gradient. The prior's error is in where exactly the latent points sit (MODEL.md), and an
estimate to refine lets a step correct that error rather than re-derive the points from
noise. The extra input weights of a prior warm-started from one without it start at zero
(``Trainer.init_priors_from``), so it starts computing exactly what it did.

With ``slot_order`` the latent points come in a canonical order (``latent_order.py``) and
every slot i adds its own learned embedding to its input token. Without it the tokens are
exchangeable, and attention alone did not learn which of two nearby noisy points goes where.
The embeddings start at zero, so a prior warm-started from one without them starts computing
exactly what it did.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import PointPriorConfig
from .layers import AdaLNBlock, gather_points, knn_indices, mlp, timestep_embedding


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


class LocalGeometry(nn.Module):
    """xyz B×M×3 -> B×M×W: an edge MLP over each point's ``k`` nearest neighbours
    (offset x_j - x_i and its length), max- and mean-pooled; the output layer starts at zero."""

    def __init__(self, k: int, hidden: int, width: int) -> None:
        super().__init__()
        self.k = k
        self.edge = mlp(4, hidden, hidden)
        self.out = nn.Linear(2 * hidden, width)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, xyz: torch.Tensor) -> torch.Tensor:
        k = min(self.k, xyz.shape[1] - 1)
        idx = knn_indices(xyz, xyz, k + 1)[..., 1:]                    # B×M×k, self excluded
        rel = gather_points(xyz, idx) - xyz.unsqueeze(2)               # B×M×k×3
        e = self.edge(torch.cat([rel, rel.norm(dim=-1, keepdim=True)], -1))
        return self.out(torch.cat([e.amax(2), e.mean(2)], -1))


class PointPrior(nn.Module):
    """eps(h_t B×M×P, t B, z B×D, cond B×C[, layout B×L×3][, x0_prev B×M×P]) -> B×M×P."""

    def __init__(self, point_dim: int, global_dim: int, cond_dim: int, cfg: PointPriorConfig,
                 n_slots: int = 0) -> None:
        """``n_slots``: the number M of latent points, needed with ``cfg.slot_order``."""
        super().__init__()
        w = cfg.width
        if cfg.slot_order:
            if n_slots <= 0:
                raise ValueError("point_prior.slot_order needs the number of latent points (n_slots)")
            self.slot_embed = nn.Parameter(torch.zeros(n_slots, w))
        if cfg.layout_attention:
            self.layout_embed = mlp(3, w, w)
            self.cross = nn.ModuleList([LayoutCrossAttention(w, cfg.heads) for _ in range(cfg.layers)])
        self.self_condition = cfg.self_condition
        in_dim = 2 * point_dim if cfg.self_condition else point_dim
        self.inp = nn.Sequential(nn.Linear(in_dim, w), nn.GELU(), nn.Linear(w, w))
        if cfg.local_knn:
            self.local = LocalGeometry(cfg.local_knn, cfg.local_width, w)
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
                layout: torch.Tensor | None = None, x0_prev: torch.Tensor | None = None) -> torch.Tensor:
        """``x0_prev``: the previous x0 estimate of ``h`` (normalized, B×M×P) for a
        self-conditioned prior; None means none (zeros). Ignored without ``self_condition``."""
        c = nn.functional.silu(self.temb(timestep_embedding(t, 128)) + self.zemb(z) + self.cemb(cond))
        if self.self_condition:
            h_in = torch.cat([h, torch.zeros_like(h) if x0_prev is None else x0_prev], -1)
        else:
            h_in = h
        x = self.inp(h_in)
        slot = getattr(self, "slot_embed", None)
        if slot is not None:
            if h.shape[1] != slot.shape[0]:
                raise ValueError(f"a slot-ordered prior takes {slot.shape[0]} latent points, got {h.shape[1]}")
            x = x + slot
        local = getattr(self, "local", None)
        if local is not None:
            x = x + local(h[..., :3])
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
