"""The full point model (VAE + condition + two priors + latent statistics) and its
checkpoint folder: ``config.json`` + ``model.safetensors`` (+ ``MODEL.md``).

Checkpoints are read with safetensors only: nothing is unpickled.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .condition import CategoryCondition
from .config import PointsConfig
from .global_prior import GlobalPrior
from .latent_order import apply_permutation, slot_permutation
from .point_prior import PointPrior
from .shape_code import LayoutDecoder, ShapeCodeEncoder
from .vae import PointsVAE

from .checkpoint import CALIBRATION, CONFIG, WEIGHTS, checkpoint_complete  # noqa: F401  (re-exported)


EXTENT_DIM = 3
WEIGHTS_DTYPES = {"float32": torch.float32, "float16": torch.float16}
# Buffers fitted after training (``calibration.py``): kept in their own small file, so that
# fitting them leaves model.safetensors (and its history) untouched.
CALIBRATION_BUFFERS = ("extent_q_model", "extent_q_data")


def latent_extents(h: torch.Tensor) -> torch.Tensor:
    """Per-axis extents (max - min) of the xyz of point latents h (B×M×P), or of point sets
    (B×N×3) -> B×3, in their units."""
    xyz = h[..., :3]
    return xyz.amax(-2) - xyz.amin(-2)


class PointsModel(nn.Module):
    """Everything sampling needs. Latents are normalized per channel before the priors see them.

    The priors' global latent (``global_latent_dim`` G) is the VAE's global latent z (D),
    followed, with ``global_prior.extents``, by the extents of the point latents: a
    hierarchical summary of the shape's proportions that the global prior generates and the
    point prior is conditioned on. The VAE decoder sees only the first D channels.
    With ``global_prior.shape_code`` C > 0 the priors' global latent is instead a learned code
    (B×C) of the point latents' layout (``shape_code.py``), and the decoder gets the VAE's mean
    global latent ``z_fixed``: that latent collapsed, the decoder ignores it.
    With ``point_prior.slot_order`` the priors see the point latents in the order of their
    assignment to ``slot_template`` (M×3, raw latent units, fitted by the trainer;
    ``latent_order.py``): every encoding goes through ``to_slot_order`` before a prior sees it.
    With ``point_prior.expert_t`` > 0 a second point prior of the same shape,
    ``point_prior_low``, denoises the timesteps below it (``point_prior_at``).
    """

    def __init__(self, cfg: PointsConfig) -> None:
        super().__init__()
        self.cfg = cfg
        v = cfg.vae
        self.vae = PointsVAE(v)
        self.cond = CategoryCondition(cfg.cond)
        gp = cfg.global_prior
        if gp.shape_code and gp.extents:
            raise ValueError("global_prior: shape_code and extents exclude each other; set one")
        if gp.fit_extents and not gp.extents:
            raise ValueError("global_prior.fit_extents needs global_prior.extents (the extents to fit to)")
        self.global_latent_dim = gp.shape_code or v.global_dim + (EXTENT_DIM if gp.extents else 0)
        if cfg.point_prior.layout_attention and not gp.shape_code:
            raise ValueError("point_prior.layout_attention needs global_prior.shape_code > 0")
        if gp.shape_code:
            self.shape_code = ShapeCodeEncoder(gp.shape_code, gp.shape_code_width)
            self.layout = LayoutDecoder(gp.shape_code, v.n_latent_points, gp.layout_width)
            self.register_buffer("z_fixed", torch.zeros(v.global_dim))
        g = self.global_latent_dim
        self.global_prior = GlobalPrior(g, cfg.cond.cond_dim, cfg.global_prior)
        self.point_prior = PointPrior(3 + v.point_feat_dim, g, cfg.cond.cond_dim, cfg.point_prior,
                                      n_slots=v.n_latent_points)
        if cfg.point_prior.expert_t < 0 or cfg.point_prior.expert_t >= cfg.diffusion.num_train_timesteps:
            raise ValueError(f"point_prior.expert_t must be in [0, {cfg.diffusion.num_train_timesteps}), "
                             f"got {cfg.point_prior.expert_t}")
        if cfg.point_prior.expert_t:
            self.point_prior_low = PointPrior(3 + v.point_feat_dim, g, cfg.cond.cond_dim, cfg.point_prior,
                                              n_slots=v.n_latent_points)
        if cfg.weights_dtype not in WEIGHTS_DTYPES:
            raise ValueError(f"weights_dtype must be one of {sorted(WEIGHTS_DTYPES)}, got {cfg.weights_dtype!r}")
        if cfg.point_prior.slot_order:
            self.register_buffer("slot_template", torch.zeros(v.n_latent_points, 3))
        cal = cfg.calibration
        if cal.extents:
            if cal.quantiles < 2 or cal.max_scale < 1.0:
                raise ValueError("calibration: quantiles must be at least 2 and max_scale at least 1, "
                                 f"got {cal.quantiles} and {cal.max_scale}")
            for name in CALIBRATION_BUFFERS:
                self.register_buffer(name, torch.zeros(max(1, len(cfg.cond.categories)), 3, cal.quantiles))
        self.register_buffer("z_mean", torch.zeros(g))
        self.register_buffer("z_std", torch.ones(g))
        self.register_buffer("h_mean", torch.zeros(3 + v.point_feat_dim))
        self.register_buffer("h_std", torch.ones(3 + v.point_feat_dim))

    def point_prior_at(self, t: torch.Tensor | int) -> PointPrior:
        """The point prior that denoises timestep ``t`` (a scalar): the low-noise expert below
        ``point_prior.expert_t``, else the main one."""
        if self.cfg.point_prior.expert_t and int(t) < self.cfg.point_prior.expert_t:
            return self.point_prior_low
        return self.point_prior

    @torch.no_grad()
    def expert_from_point_prior(self) -> None:
        """Make the low-noise expert a copy of the point prior: what it is until the expert
        stage trains it, so that a model with an untrained expert samples as one without."""
        self.point_prior_low.load_state_dict(self.point_prior.state_dict())

    def global_latent(self, z: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """The priors' global latent B×G (not normalized) of VAE latents z (B×D) and h (B×M×P)."""
        if self.cfg.global_prior.shape_code:
            return self.shape_code(h[..., :3])
        if not self.cfg.global_prior.extents:
            return z
        return torch.cat([z, latent_extents(h)], -1)

    def fit_to_extents(self, g_n: torch.Tensor, h_n: torch.Tensor) -> torch.Tensor:
        """Normalized point latents ``h_n`` (B×M×P) whose xyz is scaled per axis about its
        bounding-box centre so that its extents are the ones in the normalized global latents
        ``g_n`` (B×G; ``global_prior.extents``). Each axis's scale is kept within [1/2, 2]: a
        generated extent far from the points' own is a failed sample, not a proportion."""
        h = self.denorm_h(h_n)
        xyz = h[..., :3]
        lo, hi = xyz.amin(-2, keepdim=True), xyz.amax(-2, keepdim=True)
        target = self.denorm_z(g_n)[..., -EXTENT_DIM:].unsqueeze(-2)
        scale = (target / (hi - lo).clamp(min=1e-6)).clamp(0.5, 2.0)
        centre = (lo + hi) / 2
        return self.norm_h(torch.cat([centre + (xyz - centre) * scale, h[..., 3:]], -1))

    def calibrate(self, points: torch.Tensor, category_ids: torch.Tensor | None) -> torch.Tensor:
        """Decoded points B×N×3 (canonical frame) of shapes conditioned on ``category_ids`` (B;
        < 0: unconditional) with their extents calibrated (``calibration.extents``); unchanged
        without a calibration or without category ids."""
        if not self.cfg.calibration.extents or category_ids is None:
            return points
        from .calibration import calibrate_points
        if not bool(self.extent_q_model.abs().sum() > 0):
            raise ValueError("calibration.extents: this model's extent tables were never fitted "
                             "(run `latentforge train points --stage calibrate`)")
        return calibrate_points(points, category_ids, self.extent_q_model, self.extent_q_data,
                                self.cfg.calibration.max_scale)

    def vae_z(self, g: torch.Tensor) -> torch.Tensor:
        """The VAE's global latent B×D: the first D channels of the priors' global latent B×G
        (with a shape code: the VAE's mean global latent, for every shape)."""
        if self.cfg.global_prior.shape_code:
            return self.z_fixed.expand(g.shape[0], -1)
        return g[..., :self.cfg.vae.global_dim]

    def prior_layout(self, g_n: torch.Tensor) -> torch.Tensor | None:
        """The layout B×M×3 that the point prior cross-attends to, for normalized global
        latents ``g_n`` (B×G): the shape code's decoded layout, normalized like the latent xyz;
        None without ``point_prior.layout_attention``."""
        if not self.cfg.point_prior.layout_attention:
            return None
        return (self.layout(self.denorm_z(g_n)) - self.h_mean[:3]) / self.h_std[:3]

    def to_slot_order(self, h: torch.Tensor, *more: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Point latents ``h`` (B×M×P, raw units), and any ``more`` tensors B×M×· that go with
        them (e.g. their log-variances), put in slot order (``point_prior.slot_order``; the
        permutation is found from ``h``'s xyz). Unchanged without slot order."""
        if not self.cfg.point_prior.slot_order:
            return (h, *more)
        if not bool(self.slot_template.abs().sum() > 0):
            raise ValueError("point_prior.slot_order: this model's slot template was never fitted "
                             "(train the priors with the trainer, which fits it)")
        perm = slot_permutation(h[..., :3], self.slot_template)
        return tuple(apply_permutation(t, perm) for t in (h, *more))

    # Normalization between VAE latents and prior space.
    def norm_z(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.z_mean) / self.z_std

    def denorm_z(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.z_std + self.z_mean

    def norm_h(self, h: torch.Tensor) -> torch.Tensor:
        return (h - self.h_mean) / self.h_std

    def denorm_h(self, h: torch.Tensor) -> torch.Tensor:
        return h * self.h_std + self.h_mean

    def save(self, folder: str | Path, extra: dict[str, torch.Tensor] | None = None) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.cfg.save(folder / CONFIG)
        # Buffers (latent statistics, templates) stay float32: they are few, and exact.
        dtype = WEIGHTS_DTYPES[self.cfg.weights_dtype]
        params = {k for k, _ in self.named_parameters()}
        state = {k: (v.to(dtype) if k in params and v.is_floating_point() else v).detach().contiguous().cpu()
                 for k, v in self.state_dict().items() if k not in CALIBRATION_BUFFERS}
        tmp = folder / (WEIGHTS + ".tmp")
        save_file(state, str(tmp), metadata={"format": "pt", "model": "latentforge-points"})
        tmp.replace(folder / WEIGHTS)
        self.save_calibration(folder, config=False)

    def save_calibration(self, folder: str | Path, config: bool = True) -> None:
        """Write the fitted calibration tables (``calibration.safetensors``; removed when the
        config has none) and, with ``config``, config.json: what fitting a calibration changes."""
        folder = Path(folder)
        if config:
            self.cfg.save(folder / CONFIG)
        path = folder / CALIBRATION
        if not self.cfg.calibration.extents:
            path.unlink(missing_ok=True)
            return
        tmp = folder / (CALIBRATION + ".tmp")
        save_file({k: getattr(self, k).detach().float().contiguous().cpu() for k in CALIBRATION_BUFFERS},
                  str(tmp), metadata={"format": "pt", "model": "latentforge-points-calibration"})
        tmp.replace(path)

    @classmethod
    def load(cls, folder: str | Path, device: str = "cpu", calibration=None) -> "PointsModel":
        """The model in ``folder``; with ``calibration`` (a ``CalibrationConfig``) in place of
        the folder's, and its tables unfitted (zero), for ``calibration.fit_extent_calibration``."""
        folder = Path(folder)
        cfg = PointsConfig.load(folder / CONFIG)
        if calibration is not None:
            cfg.calibration = calibration
        model = cls(cfg)
        # Weights stored as float16 are copied into the float32 parameters.
        state = load_file(str(folder / WEIGHTS), device="cpu")
        if calibration is not None:
            state.update({k: getattr(model, k) for k in CALIBRATION_BUFFERS if hasattr(model, k)})
        elif model.cfg.calibration.extents:
            if not (folder / CALIBRATION).is_file():
                raise FileNotFoundError(f"{folder / CALIBRATION} is missing: config.json turns on "
                                        "calibration.extents (run `latentforge train points --stage calibrate`)")
            state.update(load_file(str(folder / CALIBRATION), device="cpu"))
        model.load_state_dict(state)
        return model.to(device).eval()
