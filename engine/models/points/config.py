"""Small JSON configs for the point VAE, the two latent priors and training."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any


def _from_dict(cls, d: dict[str, Any] | None):
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in (d or {}).items() if k in names})


@dataclass
class VAEConfig:
    """Point VAE: 2048-point clouds <-> global latent + ``n_latent_points`` point latents."""

    n_latent_points: int = 128      # M: point-structured latents per shape
    point_feat_dim: int = 3         # F: features per latent point besides xyz
    global_dim: int = 128           # D: global shape latent
    knn: int = 16                   # neighbours grouped per latent point by the encoder
    width: int = 128                # hidden width of encoder and decoder
    dec_layers: int = 2             # transformer layers of the decoder over latent points
    dec_heads: int = 4
    patch_dim: int = 2              # dimension of the random patch coordinate each output point folds from
    max_offset: float = 0.25        # largest offset of an output point from its latent point
    min_xyz_std: float = 0.012      # floor of the posterior std of latent xyz: the decoder must tolerate prior errors


@dataclass
class GlobalPriorConfig:
    """ResNet-MLP epsilon model on the (normalized) global latent."""

    width: int = 256
    blocks: int = 4
    dropout: float = 0.0
    # Also generate the per-axis extents of the latent points (3 numbers after the VAE's
    # global latent) and condition the point prior on them: with a collapsed global latent
    # the point prior alone sets the proportions (measured: checkpoint MODEL.md, step 8).
    extents: bool = False
    # With ``extents``: after the point prior, scale the latent points' xyz per axis about
    # their bounding-box centre so that their extents are the generated ones. The point prior
    # follows the extents only approximately, and the proportions are what 1-NNA sees first.
    fit_extents: bool = False
    # > 0: the priors' global latent is a learned code of this many channels of the latent
    # points' layout (shape_code.py) instead of the VAE's global latent, which collapsed;
    # the decoder then gets the VAE's mean global latent. Excludes ``extents``.
    shape_code: int = 0
    shape_code_width: int = 128     # the code's PointNet encoder
    layout_width: int = 512         # the MLP that decodes a code to the latent points' layout


@dataclass
class PointPriorConfig:
    """Transformer epsilon model over the (normalized) latent points, conditioned on global."""

    width: int = 128
    layers: int = 4
    heads: int = 4
    # Cross-attend to the layout the shape code decodes to (needs global_prior.shape_code).
    layout_attention: bool = False
    # Each latent point also sees its k nearest neighbours' offsets (0: off). Attention over
    # a smooth embedding of xyz cannot resolve the spacing of nearby points, so the
    # low-noise steps left latent points bunched (MODEL.md, Training step 7).
    local_knn: int = 0
    local_width: int = 64
    # Self-conditioning (Chen et al. 2023, "Analog Bits"): the prior also sees its own previous
    # x0 estimate (zeros on the first step and for half the training batch), so each sampler
    # step refines the last estimate instead of re-deriving it from the noisy latents alone.
    self_condition: bool = False
    # Latent points in a canonical order (``latent_order.py``: optimal assignment to one
    # template) and a learned embedding per slot, so that the prior's tokens are not
    # exchangeable: two nearby noisy points know which of them goes where (MODEL.md step 12).
    slot_order: bool = False
    # > 0: timesteps below this are denoised by a second point prior of the same shape, the
    # low-noise expert (eDiff-I's expert denoisers), trained by the ``expert`` stage on those
    # timesteps alone. One prior over all noise levels left the latent points bunched and off
    # the surface at the last steps (MODEL.md, Training step 7), where it saw a tenth of its
    # training draws per hundred timesteps.
    expert_t: int = 0


@dataclass
class CondConfig:
    """One conditioning vector per shape: a category embedding now, a CLIP image embedding later."""

    cond_dim: int = 64
    categories: list[str] = field(default_factory=list)
    p_uncond: float = 0.1           # probability of dropping the condition in training (CFG)


@dataclass
class DiffusionConfig:
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "epsilon"    # or "v_prediction" (sound at the last, zero-signal timesteps)
    # Timestep spacing of the sampling schedulers (diffusers' names); "trailing" starts at the
    # last training timestep, which v-prediction can denoise from pure noise.
    timestep_spacing: str | None = None
    # Sampling starts at this fraction of the schedule (from pure noise). With epsilon
    # prediction and the cosine schedule, alpha_bar < 0.02 above ~0.9: there an x0 estimate
    # is eps error / 0.1 or worse, and short-trained priors overshoot (samples too large).
    sample_t_max: float = 0.9           # 1.0 for v-prediction: no part of the schedule is skipped
    guidance: float = 1.5               # default classifier-free guidance scale (chosen on the val split)


@dataclass
class CleanupConfig:
    """Stray-point removal after decoding (``cleanup.remove_outliers``)."""

    enabled: bool = False
    oversample: float = 1.25        # decode this many times the requested points, then drop outliers
    k: int = 16
    std_ratio: float = 1.5


@dataclass
class CalibrationConfig:
    """Extent calibration after decoding (``calibration.py``), fitted by ``train points
    --stage calibrate``: category-conditioned samples get their per-axis extents quantile-mapped
    to the training shapes'."""

    extents: bool = False
    quantiles: int = 33             # K: quantile levels per category and axis
    max_scale: float = 1.5          # each axis is scaled by a factor within [1/max_scale, max_scale]


@dataclass
class PointsConfig:
    vae: VAEConfig = field(default_factory=VAEConfig)
    global_prior: GlobalPriorConfig = field(default_factory=GlobalPriorConfig)
    point_prior: PointPriorConfig = field(default_factory=PointPriorConfig)
    cond: CondConfig = field(default_factory=CondConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    cleanup: CleanupConfig = field(default_factory=CleanupConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    n_points: int = 2048            # points per training shape
    # How model.safetensors stores the weights: "float16" halves the file (a low-noise expert
    # would take it over 20 MB in float32); the model computes in float32 either way.
    weights_dtype: str = "float32"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PointsConfig":
        return cls(vae=_from_dict(VAEConfig, d.get("vae")),
                   global_prior=_from_dict(GlobalPriorConfig, d.get("global_prior")),
                   point_prior=_from_dict(PointPriorConfig, d.get("point_prior")),
                   cond=_from_dict(CondConfig, d.get("cond")),
                   diffusion=_from_dict(DiffusionConfig, d.get("diffusion")),
                   cleanup=_from_dict(CleanupConfig, d.get("cleanup")),
                   calibration=_from_dict(CalibrationConfig, d.get("calibration")),
                   n_points=int(d.get("n_points", 2048)),
                   weights_dtype=str(d.get("weights_dtype", "float32")))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "PointsConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))


def tiny_config(categories: list[str]) -> PointsConfig:
    """A very small config for unit tests (seconds on CPU)."""
    return PointsConfig(
        vae=VAEConfig(n_latent_points=32, point_feat_dim=2, global_dim=16, knn=8, width=32, dec_layers=1,
                      dec_heads=2),
        global_prior=GlobalPriorConfig(width=64, blocks=2),
        point_prior=PointPriorConfig(width=32, layers=1, heads=2),
        cond=CondConfig(cond_dim=16, categories=list(categories)),
        n_points=256,
    )
