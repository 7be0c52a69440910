"""Extent calibration: per category, map a generated shape's per-axis extents through the
model's own extent distribution onto the training data's (quantile mapping).

Why: the priors reproduce the shapes' parts better than their proportions (MODEL.md, Training
steps 16-17: airplanes come out flatter than the data, lamps shorter). A monotone map per
category and axis, fitted after training from the model's own samples and the training
shapes, moves each sample's extents to the data quantile at the sample's rank in the model's
distribution: the order of the shapes (a tall sample stays taller than a short one) and
everything but the three axis scales are kept. It is the quantile mapping used to remove
the bias of simulators (e.g. climate models); there is no library for it on torch tensors
with per-row tables, so the interpolation is written here (``torch.searchsorted``).

Tables, shapes: ``q_model`` and ``q_data`` are C×3×K (categories × axes × quantiles at
levels (k + 0.5) / K), in the canonical frame's units; each row non-decreasing.
"""

from __future__ import annotations

import numpy as np
import torch

from .model import latent_extents


def quantile_table(extents: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor, n_categories: int,
                   n_quantiles: int) -> torch.Tensor:
    """Extent quantiles C×3×K of extents S×3 whose category indices are ``labels`` (S), at
    levels (k + 0.5) / K. A category without any shape raises ValueError."""
    e = torch.as_tensor(extents, dtype=torch.float64)
    lab = torch.as_tensor(labels)
    levels = (torch.arange(n_quantiles, dtype=torch.float64) + 0.5) / n_quantiles
    out = torch.empty(n_categories, 3, n_quantiles, dtype=torch.float64)
    for c in range(n_categories):
        ec = e[lab == c]
        if len(ec) == 0:
            raise ValueError(f"category index {c} has no shapes to calibrate on")
        out[c] = torch.quantile(ec, levels, dim=0).T
    return out.float()


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Row-wise piecewise-linear interpolation: x (R), xp and fp (R×K, xp non-decreasing).
    Outside [xp_0, xp_K-1] the end ratio fp/xp is kept (a scale, not a clamp to the end)."""
    k = xp.shape[-1]
    i = torch.searchsorted(xp.contiguous(), x[:, None]).squeeze(-1).clamp(1, k - 1)
    x0, x1 = xp.gather(1, (i - 1)[:, None])[:, 0], xp.gather(1, i[:, None])[:, 0]
    f0, f1 = fp.gather(1, (i - 1)[:, None])[:, 0], fp.gather(1, i[:, None])[:, 0]
    w = ((x - x0) / (x1 - x0).clamp(min=1e-12)).clamp(0, 1)
    inside = f0 + w * (f1 - f0)
    below = x * fp[:, 0] / xp[:, 0].clamp(min=1e-12)
    above = x * fp[:, -1] / xp[:, -1].clamp(min=1e-12)
    return torch.where(x < xp[:, 0], below, torch.where(x > xp[:, -1], above, inside))


def extent_scales(extents: torch.Tensor, category_ids: torch.Tensor, q_model: torch.Tensor,
                  q_data: torch.Tensor, max_scale: float) -> torch.Tensor:
    """Per-axis scale factors B×3 that move extents B×3 (categories ``category_ids``, B) to
    their calibrated values, each within [1/max_scale, max_scale]."""
    b = extents.shape[0]
    ids = category_ids.to(q_model.device).long()
    xp = q_model[ids].reshape(b * 3, -1)
    fp = q_data[ids].reshape(b * 3, -1)
    e = extents.reshape(b * 3).to(xp.dtype)
    target = _interp(e, xp, fp)
    scale = (target / e.clamp(min=1e-9)).clamp(1.0 / max_scale, max_scale)
    return scale.reshape(b, 3).to(extents.dtype)


def calibrate_points(points: torch.Tensor, category_ids: torch.Tensor, q_model: torch.Tensor,
                     q_data: torch.Tensor, max_scale: float) -> torch.Tensor:
    """Points B×N×3 scaled per axis about their bounding-box centre to calibrated extents
    (``extent_scales``); a category id < 0 (unconditional) leaves its shape unchanged."""
    ids = category_ids.to(points.device).long()
    keep = ids < 0
    lo, hi = points.amin(-2, keepdim=True), points.amax(-2, keepdim=True)
    scale = extent_scales((hi - lo)[:, 0], ids.clamp(min=0), q_model.to(points.device),
                          q_data.to(points.device), max_scale)
    centre = (lo + hi) / 2
    return torch.where(keep[:, None, None], points, centre + (points - centre) * scale[:, None, :])


@torch.no_grad()
def fit_extent_calibration(model, train, samples_per_category: int, *, steps: int = 25,
                           guidance: float | None = None, seed: int = 1000, batch: int = 16,
                           n_points: int | None = None, progress=None) -> dict[str, float]:
    """Fit ``model``'s extent tables (``PointsModel`` with ``calibration.extents``) in place.

    ``train`` (``data.PointSets``, the training shapes): the data side, each shape's extents
    measured on ``n_points`` (default the model's) of its pool. The model side: the extents of
    ``samples_per_category`` uncalibrated category-conditioned samples per category (``steps``
    sampler steps per prior, ``guidance`` default the checkpoint's, seeds from ``seed``).
    ``progress(done, total)`` is called after each batch. Returns the mean |log scale| that the
    fitted map applies to the model's own samples, per category (a summary for the log).
    """
    from .sampler import LatentSampler

    cfg = model.cfg
    if not cfg.calibration.extents:
        raise ValueError("fitting an extent calibration needs a model config with calibration.extents")
    cats = list(cfg.cond.categories)
    missing = sorted(set(cats) - set(train.categories))
    if missing:
        raise ValueError(f"the training data has no shapes of {', '.join(missing)}; calibrate on the data "
                         "the model was trained on")
    n_points = n_points or cfg.n_points
    rng = np.random.default_rng(seed)
    pool = train.points.shape[1]
    names = [train.categories[i] for i in train.labels]
    keep = [i for i, name in enumerate(names) if name in cats]
    # The same number of points as the samples: a bounding box grows with the points drawn.
    data_ext = np.stack([latent_extents(torch.from_numpy(
        train.points[i][rng.choice(pool, min(n_points, pool), replace=False)])).numpy() for i in keep])
    data_lab = np.array([cats.index(names[i]) for i in keep])

    sampler = LatentSampler(model)
    guidance = cfg.diffusion.guidance if guidance is None else guidance
    model_ext, model_lab, total, done = [], [], samples_per_category * len(cats), 0
    for c in range(len(cats)):
        for b0 in range(0, samples_per_category, batch):
            b = min(batch, samples_per_category - b0)
            g = torch.Generator(device=sampler.device).manual_seed(seed + 7919 * c + b0)
            cond = sampler.condition(torch.full((b,), c, dtype=torch.long))
            pts = sampler.run(cond, n_points=n_points, steps=steps, guidance=guidance, generator=g)
            model_ext.append(latent_extents(pts).cpu().numpy())
            model_lab.append(np.full(b, c))
            done += b
            if progress:
                progress(done, total)
    model_ext, model_lab = np.concatenate(model_ext), np.concatenate(model_lab)
    k = cfg.calibration.quantiles
    dev = model.extent_q_model.device
    model.extent_q_model.copy_(quantile_table(model_ext, model_lab, len(cats), k).to(dev))
    model.extent_q_data.copy_(quantile_table(data_ext, data_lab, len(cats), k).to(dev))
    scales = extent_scales(torch.from_numpy(model_ext).float().to(dev), torch.from_numpy(model_lab).to(dev),
                           model.extent_q_model, model.extent_q_data, cfg.calibration.max_scale)
    logs = scales.log().abs().mean(-1).cpu().numpy()
    return {cats[c]: float(logs[model_lab == c].mean()) for c in range(len(cats))}
