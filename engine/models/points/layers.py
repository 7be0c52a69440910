"""Building blocks in plain torch: farthest point sampling, kNN grouping, timestep
embeddings and an adaptive-LayerNorm transformer block.

Plain torch on purpose: PVCNN (LION's backbone) needs custom CUDA voxelization kernels,
which do not run on the CPU default and complicate installs. Set abstraction with kNN
(PointNet++) and attention over a few hundred latent points are dense matmuls that run
well on CPU and scale on GPU without custom kernels.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def mlp(*dims: int) -> nn.Sequential:
    """Linear layers of sizes ``dims`` with GELU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(nn.GELU())
    return nn.Sequential(*layers)


def farthest_point_sample(x: torch.Tensor, m: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices (B×m, long) of ``m`` farthest points of ``x`` (B×N×3); random first point."""
    b, n, _ = x.shape
    idx = torch.empty(b, m, dtype=torch.long, device=x.device)
    dist = torch.full((b, n), float("inf"), device=x.device, dtype=x.dtype)
    far = torch.randint(0, n, (b,), device=x.device, generator=generator) if generator is not None \
        else torch.randint(0, n, (b,), device=x.device)
    ar = torch.arange(b, device=x.device)
    with torch.no_grad():
        for i in range(m):
            idx[:, i] = far
            c = x[ar, far].unsqueeze(1)                       # B×1×3
            dist = torch.minimum(dist, ((x - c) ** 2).sum(-1))
            far = dist.argmax(-1)
    return idx


def gather_points(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``x`` B×N×C gathered by ``idx`` B×M or B×M×K -> B×M×C or B×M×K×C."""
    b = x.shape[0]
    flat = idx.reshape(b, -1)
    out = torch.gather(x, 1, flat.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
    return out.reshape(*idx.shape, x.shape[-1])


def knn_indices(query: torch.Tensor, ref: torch.Tensor, k: int) -> torch.Tensor:
    """Indices B×M×k of the ``k`` nearest ``ref`` (B×N×3) points of each ``query`` (B×M×3)."""
    with torch.no_grad():
        d = torch.cdist(query, ref)
        return d.topk(k, dim=-1, largest=False).indices


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding B×dim of (float or int) timesteps ``t`` (B,)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class AdaLNBlock(nn.Module):
    """Pre-norm transformer block whose LayerNorms are modulated by a conditioning vector.

    Modulation weights start at zero so each block starts as the identity (DiT's adaLN-Zero),
    which makes short trainings stable.
    """

    def __init__(self, width: int, heads: int, cond_width: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, width * mlp_ratio), nn.GELU(), nn.Linear(width * mlp_ratio, width))
        self.mod = nn.Linear(cond_width, 6 * width)
        nn.init.zeros_(self.mod.weight)
        nn.init.zeros_(self.mod.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``x`` B×M×W tokens, ``c`` B×C conditioning -> B×M×W."""
        s1, b1, g1, s2, b2, g2 = self.mod(c).unsqueeze(1).chunk(6, dim=-1)
        h = self.norm1(x) * (1 + s1) + b1
        x = x + g1 * self.attn(h, h, h, need_weights=False)[0]
        h = self.norm2(x) * (1 + s2) + b2
        return x + g2 * self.mlp(h)
