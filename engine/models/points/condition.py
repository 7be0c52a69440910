"""The one conditioning vector every prior sees.

Today it is a learned category embedding; a CLIP image embedding (projected to
``cond_dim``) replaces it later without changing the priors. A learned ``null`` vector
stands for "no condition": training drops the condition to it at random, and sampling
mixes conditional and unconditional predictions (classifier-free guidance).
"""

from __future__ import annotations

import torch
from torch import nn

from .config import CondConfig


class CategoryCondition(nn.Module):
    """Category ids (B,) -> condition vectors B×cond_dim; id -1 means unconditional."""

    def __init__(self, cfg: CondConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.table = nn.Embedding(max(1, len(cfg.categories)), cfg.cond_dim)
        self.null = nn.Parameter(torch.zeros(cfg.cond_dim))
        nn.init.normal_(self.table.weight, std=1.0)

    def index(self, category: str) -> int:
        return self.cfg.categories.index(category)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        uncond = ids < 0
        emb = self.table(ids.clamp(min=0))
        return torch.where(uncond.unsqueeze(-1), self.null.expand_as(emb), emb)

    def drop(self, ids: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
        """Ids with a fraction ``p`` replaced by -1 (training-time condition dropout)."""
        r = torch.rand(ids.shape, device=ids.device, generator=generator)
        return torch.where(r < p, torch.full_like(ids, -1), ids)
