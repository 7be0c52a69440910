"""Hierarchical point VAE: a point cloud <-> (global latent, point-structured latents).

Encoder: PointNet++-style set abstraction (farthest point sampling of M centres, kNN
grouping, shared MLP + max pool) gives per-centre features; their max pool gives the
global latent ``z`` (B×D); each centre gives a latent point ``h`` (B×M×(3+F)): xyz (the
centre plus a learned shift) and F features.

Decoder: the reconstruction quality limited an earlier folding decoder (see
MEASUREMENTS.md), so the decoder here does not invent the shape from ``z`` alone: a small
transformer over the M latent points (modulated by ``z``) gives each latent point a local
context, and every output point folds a random patch coordinate through an MLP of its
latent point's feature into an offset from that latent point. Any number of output points
can be drawn; their density follows the latent points (uniform by farthest point sampling).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import VAEConfig
from .layers import AdaLNBlock, farthest_point_sample, gather_points, knn_indices, mlp


class PointEncoder(nn.Module):
    """B×N×3 points -> posterior parameters of z (B×D) and h (B×M×(3+F))."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.local = mlp(3, w // 2, w)
        self.local2 = mlp(2 * w, w, w)
        self.global_head = mlp(w, w, 2 * cfg.global_dim)
        self.point_head = mlp(2 * w, w, 2 * (3 + cfg.point_feat_dim))
        # Small initial posterior variance on xyz, so the decoder first learns geometry.
        with torch.no_grad():
            b = self.point_head[-1].bias
            b[3 + cfg.point_feat_dim:3 + cfg.point_feat_dim + 3] = -7.0
            b[3 + cfg.point_feat_dim + 3:] = -2.0
            self.point_head[-1].weight.mul_(0.1)
            self.global_head[-1].bias[cfg.global_dim:] = -2.0

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        centres = gather_points(x, farthest_point_sample(x, cfg.n_latent_points, generator))  # B×M×3
        nb = gather_points(x, knn_indices(centres, x, min(cfg.knn, x.shape[1])))            # B×M×k×3
        f = self.local(nb - centres.unsqueeze(2)).amax(2)                                   # B×M×W
        g = f.amax(1, keepdim=True).expand_as(f)
        f = self.local2(torch.cat([f, g], -1))                                              # B×M×W
        gf = f.amax(1)
        z_mu, z_lv = self.global_head(gf).chunk(2, -1)
        p = self.point_head(torch.cat([f, gf.unsqueeze(1).expand_as(f)], -1))
        h_mu, h_lv = p.chunk(2, -1)
        # The xyz part stays near its centre: the latent points are a coarse copy of the shape.
        h_mu = torch.cat([centres + 0.05 * torch.tanh(h_mu[..., :3]), h_mu[..., 3:]], -1)
        # Without a floor the Chamfer loss drives the xyz variance to ~0 and the decoder then
        # reproduces every error of the point prior; with it, it learns to clean them up.
        floor = 2.0 * math.log(cfg.min_xyz_std) if cfg.min_xyz_std > 0 else -12.0
        h_lv = torch.cat([h_lv[..., :3].clamp(floor, 4), h_lv[..., 3:].clamp(-12, 4)], -1)
        return {"z_mu": z_mu, "z_logvar": z_lv.clamp(-12, 4), "h_mu": h_mu, "h_logvar": h_lv}


class PointDecoder(nn.Module):
    """(z B×D, h B×M×(3+F)) -> B×n×3 points on the surface."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.embed = mlp(3 + cfg.point_feat_dim, w, w)
        self.zproj = mlp(cfg.global_dim, w, w)
        self.blocks = nn.ModuleList([AdaLNBlock(w, cfg.dec_heads, w) for _ in range(cfg.dec_layers)])
        self.out_norm = nn.LayerNorm(w)
        self.fold_in = nn.Linear(cfg.patch_dim, w)
        self.fold = mlp(w, w, w // 2, 3)

    def token_features(self, z: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Context features B×M×W of each latent point."""
        c = self.zproj(z)
        t = self.embed(h) + c.unsqueeze(1)
        for blk in self.blocks:
            t = blk(t, c)
        return self.out_norm(t)

    def forward(self, z: torch.Tensor, h: torch.Tensor, n_points: int,
                generator: torch.Generator | None = None) -> torch.Tensor:
        b, m, _ = h.shape
        feats = self.token_features(z, h)
        # Output point j folds from latent point j mod M: every latent point gets n/M points (±1).
        owner = torch.arange(n_points, device=h.device) % m
        u = torch.rand(b, n_points, self.cfg.patch_dim, device=h.device, generator=generator) * 2 - 1
        tf = feats[:, owner]                                                   # B×n×W
        off = self.fold(torch.nn.functional.gelu(tf + self.fold_in(u)))
        return h[:, owner, :3] + self.cfg.max_offset * torch.tanh(off)


class PointsVAE(nn.Module):
    """The hierarchical VAE (encoder + decoder)."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = PointEncoder(cfg)
        self.decoder = PointDecoder(cfg)

    @property
    def point_latent_dim(self) -> int:
        return 3 + self.cfg.point_feat_dim

    @staticmethod
    def sample_posterior(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None,
                         scale: float = 1.0) -> torch.Tensor:
        """A draw from N(mu, exp(logvar)) with its noise scaled by ``scale`` (0: the mean); any shape."""
        if scale == 0.0:
            return mu
        eps = torch.randn(mu.shape, device=mu.device, dtype=mu.dtype, generator=generator)
        return mu + scale * torch.exp(0.5 * logvar) * eps

    def encode(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        return self.encoder(x, generator)

    def decode(self, z: torch.Tensor, h: torch.Tensor, n_points: int = 2048,
               generator: torch.Generator | None = None) -> torch.Tensor:
        return self.decoder(z, h, n_points, generator)

    def forward(self, x: torch.Tensor, n_points: int | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Reconstruction B×n×3 from posterior samples, and the posterior parameters."""
        post = self.encode(x)
        z = self.sample_posterior(post["z_mu"], post["z_logvar"])
        h = self.sample_posterior(post["h_mu"], post["h_logvar"])
        return self.decode(z, h, n_points or x.shape[1]), post
