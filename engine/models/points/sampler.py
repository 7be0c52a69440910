"""Sampling in the latent space with diffusers schedulers: generation (global prior,
then point prior, then decoder), SDEdit refinement, and DDIM-inversion interpolation.

Every step calls ``hooks.step`` (progress + cancellation) and, when ``hooks.want_preview``
says so, decodes the current x0 estimate of the point latents into points for a preview.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

from .config import DiffusionConfig
from .cleanup import remove_outliers
from .model import PointsModel

SAMPLERS = ("dpmsolver++", "ddim", "ddpm")


def train_scheduler(cfg: DiffusionConfig) -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule,
                         prediction_type=cfg.prediction_type, clip_sample=False)


def sample_scheduler(cfg: DiffusionConfig, kind: str = "dpmsolver++"):
    """A fresh sampling scheduler (they keep per-run state, so one per denoising loop)."""
    common = dict(num_train_timesteps=cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule,
                  prediction_type=cfg.prediction_type)
    if cfg.timestep_spacing:
        common["timestep_spacing"] = cfg.timestep_spacing
    if kind == "dpmsolver++":
        # lambda_min_clipped: the cosine schedule's last steps have alpha_bar ~ 1e-10, where the
        # data prediction x0 = (x - sigma eps) / alpha explodes; diffusers' documented fix.
        return DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2,
                                           lower_order_final=True, lambda_min_clipped=-5.1, **common)
    if kind == "ddim":
        return DDIMScheduler(clip_sample=False, set_alpha_to_one=True, **common)
    if kind == "ddpm":
        return DDPMScheduler(clip_sample=False, **common)
    raise ValueError(f"unknown sampler {kind!r}; one of {SAMPLERS}")


@dataclass
class Hooks:
    """Callbacks from the denoising loops (all optional)."""

    step: Callable[[str, int, int], None] | None = None           # (stage, step, total); may raise to cancel
    want_preview: Callable[[int], bool] | None = None               # global step index -> send a preview?
    preview: Callable[[torch.Tensor, str], None] | None = None      # (points B×n×3, stage)
    preview_points: int = 512


X0_CLIP = 5.0   # latents are normalized per channel, so |x0| > 5 is never data


def _alpha_bar(scheduler, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    a = scheduler.alphas_cumprod.to(x_t.device)[t.long()].float()
    while a.dim() < x_t.dim():
        a = a.unsqueeze(-1)
    return a


def eps_and_x0(scheduler, x_t: torch.Tensor, out: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A prior's output (epsilon or v, per ``scheduler.config.prediction_type``) at ``x_t`` as
    (epsilon, x0), x0 clipped to the latent range.

    At high noise a small epsilon error becomes a huge x0 error (divided by sqrt(alpha_bar));
    clipping x0 and re-deriving epsilon keeps every scheduler (DPM-Solver++, DDIM) stable.
    """
    a = _alpha_bar(scheduler, x_t, t)
    x0 = x0_from_output(x_t, out, a, scheduler.config.prediction_type)
    return (x_t - a.sqrt() * x0) / (1 - a).sqrt(), x0


def x0_from_output(x_t: torch.Tensor, out: torch.Tensor, a: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """The clipped x0 estimate of a prior's output ``out`` (epsilon or v) at ``x_t``, any shape;
    ``a`` is alpha_bar at the timestep, broadcastable to ``x_t``."""
    if prediction_type == "v_prediction":
        x0 = a.sqrt() * x_t - (1 - a).sqrt() * out
    else:
        x0 = (x_t - (1 - a).sqrt() * out) / a.sqrt()
    return x0.clamp(-X0_CLIP, X0_CLIP)


def _x0(scheduler, x_t: torch.Tensor, out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return eps_and_x0(scheduler, x_t, out, t)[1]


def _clip_eps(scheduler, x_t: torch.Tensor, out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The model output (same prediction type) whose x0 estimate is clipped to the latent range."""
    eps, x0 = eps_and_x0(scheduler, x_t, out, t)
    if scheduler.config.prediction_type == "v_prediction":
        a = _alpha_bar(scheduler, x_t, t)
        return a.sqrt() * eps - (1 - a).sqrt() * x0
    return eps


class LatentSampler:
    """Runs the two priors and the decoder of a ``PointsModel``."""

    def __init__(self, model: PointsModel) -> None:
        self.model = model

    @property
    def device(self) -> torch.device:
        return self.model.z_mean.device

    def condition(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.cond(ids.to(self.device))

    def _eps_global(self, z, t, cond, null, guidance):
        gp = self.model.global_prior
        tt = t.expand(z.shape[0]).to(self.device)
        if guidance == 1.0:
            return gp(z, tt, cond)
        e = gp(torch.cat([z, z]), torch.cat([tt, tt]), torch.cat([cond, null]))
        ec, eu = e.chunk(2)
        return eu + guidance * (ec - eu)

    def _eps_points(self, h, t, z, cond, null, guidance, layout=None, x0_prev=None):
        pp = self.model.point_prior_at(t)
        tt = t.expand(h.shape[0]).to(self.device)
        if guidance == 1.0:
            return pp(h, tt, z, cond, layout, x0_prev)
        # Both branches see the same (guided) previous estimate.
        e = pp(torch.cat([h, h]), torch.cat([tt, tt]), torch.cat([z, z]), torch.cat([cond, null]),
               None if layout is None else torch.cat([layout, layout]),
               None if x0_prev is None else torch.cat([x0_prev, x0_prev]))
        ec, eu = e.chunk(2)
        return eu + guidance * (ec - eu)

    def _timesteps(self, sched, steps: int, strength: float):
        """The ``steps`` timesteps that run from noise level ``strength`` × ``sample_t_max``.

        The schedule is laid out over ``steps / level`` steps and only its last ``steps`` run,
        so the user's step count is what runs whatever the strength (SDEdit).
        """
        level = max(1e-3, strength * self.model.cfg.diffusion.sample_t_max)
        # More steps than training timesteps below the start level cannot run: cap them.
        steps = max(1, min(steps, int(self.model.cfg.diffusion.num_train_timesteps * level)))
        total = max(steps, int(round(steps / level)))
        sched.set_timesteps(total, device=self.device)
        ts = sched.timesteps
        start = max(0, len(ts) - steps)
        if start and hasattr(sched, "set_begin_index"):
            sched.set_begin_index(start)
        return ts[start:]

    @torch.no_grad()
    def decode(self, z_n: torch.Tensor, h_n: torch.Tensor, n_points: int,
               generator: torch.Generator | None = None, clean: bool | None = None) -> torch.Tensor:
        """Normalized latents -> points B×n×3; stray points removed when ``clean`` (default:
        the checkpoint's ``cleanup.enabled``)."""
        m = self.model
        cc = m.cfg.cleanup
        z, h = m.vae_z(m.denorm_z(z_n)), m.denorm_h(h_n)
        if not (cc.enabled if clean is None else clean):
            return m.vae.decode(z, h, n_points, generator)
        pts = m.vae.decode(z, h, int(round(n_points * max(1.0, cc.oversample))), generator)
        return remove_outliers(pts, n_points, cc.k, cc.std_ratio, generator)

    @torch.no_grad()
    def run(self, cond: torch.Tensor, *, n_points: int = 2048, steps: int = 25, guidance: float = 2.0,
            sampler: str = "dpmsolver++", generator: torch.Generator | None = None,
            z_init: torch.Tensor | None = None, h_init: torch.Tensor | None = None, strength: float = 1.0,
            hooks: Hooks | None = None, return_latents: bool = False,
            z_noise: torch.Tensor | None = None, h_noise: torch.Tensor | None = None, clean: bool | None = None,
            noise_level: float = 1.0, category_ids: torch.Tensor | None = None):
        """Denoise global then point latents for condition vectors ``cond`` (B×C) and decode.

        ``z_init``/``h_init`` (normalized latents, B×D and B×M×P) with ``strength`` < 1 is
        SDEdit: they are noised to that level and denoised from there. ``z_noise``/``h_noise``
        replace the initial Gaussian noise (e.g. from ``ddim_invert``, for interpolation).
        ``clean`` overrides the checkpoint's stray-point removal (``decode``). ``noise_level``
        (0-1] is where ``z_noise``/``h_noise`` sit in the schedule (``ddim_invert``'s ``level``).
        ``category_ids`` (B; < 0 unconditional), given for fresh category-conditioned samples,
        turn on the checkpoint's extent calibration (``calibration.extents``; ``PointsModel.calibrate``).
        """
        z, h = self.denoise(cond, steps=steps, guidance=guidance, sampler=sampler, generator=generator,
                            z_init=z_init, h_init=h_init, strength=strength, hooks=hooks, z_noise=z_noise,
                            h_noise=h_noise, noise_level=noise_level)
        out = self.model.calibrate(self.decode(z, h, n_points, generator, clean), category_ids)
        return (out, z, h) if return_latents else out

    @torch.no_grad()
    def denoise(self, cond: torch.Tensor, *, steps: int = 25, guidance: float = 2.0, sampler: str = "dpmsolver++",
                generator: torch.Generator | None = None, z_init: torch.Tensor | None = None,
                h_init: torch.Tensor | None = None, strength: float = 1.0, hooks: Hooks | None = None,
                z_noise: torch.Tensor | None = None, h_noise: torch.Tensor | None = None,
                noise_level: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """``run`` without the decoding: the denoised normalized latents (B×D global, B×M×P points).
        With ``global_prior.fit_extents`` the point latents come fitted to the generated extents."""
        m, hooks = self.model, hooks or Hooks()
        b, dev = cond.shape[0], self.device
        null = m.cond.null.expand_as(cond)
        D, M, P = m.global_latent_dim, m.cfg.vae.n_latent_points, 3 + m.cfg.vae.point_feat_dim
        strength = float(min(max(strength, 0.0), 1.0))
        if z_init is not None and strength == 0.0:
            return z_init, h_init
        total = 2 * steps
        k = 0

        sched = sample_scheduler(m.cfg.diffusion, sampler)
        ts = self._timesteps(sched, steps, strength if z_init is not None else noise_level)
        # From pure noise the first timestep's tiny signal (sqrt(alpha_bar) ~ 0.15) is neglected.
        z = z_noise if z_noise is not None else torch.randn(b, D, device=dev, generator=generator)
        if z_init is not None and strength < 1.0:
            z = sched.add_noise(z_init, z, ts[:1].repeat(b))
        for t in ts:
            eps = _clip_eps(sched, z, self._eps_global(z, t, cond, null, guidance), t.expand(b))
            z = sched.step(eps, t, z).prev_sample
            k += 1
            if hooks.step:
                hooks.step("global", k, total)

        layout = m.prior_layout(z)
        sched = sample_scheduler(m.cfg.diffusion, sampler)
        ts = self._timesteps(sched, steps, strength if h_init is not None else noise_level)
        h = h_noise if h_noise is not None else torch.randn(b, M, P, device=dev, generator=generator)
        if h_init is not None and strength < 1.0:
            h = sched.add_noise(h_init, h, ts[:1].repeat(b))
        self_cond = m.cfg.point_prior.self_condition
        x0 = None     # the previous step's estimate, for a self-conditioned prior
        for i, t in enumerate(ts):
            eps = _clip_eps(sched, h, self._eps_points(h, t, z, cond, null, guidance, layout,
                                                       x0 if self_cond else None), t.expand(b))
            want = hooks.preview and hooks.want_preview and i < len(ts) - 1 and hooks.want_preview(k + 1)
            if self_cond or want:
                x0 = _x0(sched, h, eps, t.expand(b))
            if want:
                hooks.preview(self.decode(z, x0, hooks.preview_points, generator, clean=False), "points")
            h = sched.step(eps, t, h).prev_sample
            k += 1
            if hooks.step:
                hooks.step("points", k, total)
        if m.cfg.global_prior.fit_extents:
            h = m.fit_to_extents(z, h)
        return z, h

    @torch.no_grad()
    def encode(self, points: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Points B×N×3 (canonical frame) -> normalized posterior means (global B×G, h B×M×P)."""
        m = self.model
        post = m.vae.encode(points.to(self.device), generator)
        h, = m.to_slot_order(post["h_mu"])
        return m.norm_z(m.global_latent(post["z_mu"], h)), m.norm_h(h)

    @torch.no_grad()
    def ddim_invert(self, z: torch.Tensor, h: torch.Tensor, cond: torch.Tensor, steps: int = 25,
                    hooks: Hooks | None = None, level: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Deterministic DDIM inversion (unguided) of normalized latents to noise (z_T, h_T).

        The global latent is inverted first; the point latents are inverted conditioned on the
        clean global latent, mirroring how they are generated. ``level`` (0-1] is how far into
        the schedule to go (``run(..., noise_level=level)`` samples back). ``hooks.step`` is called after
        every prior evaluation (stage "invert", 2 × steps in all) and may raise to cancel.
        """
        hooks = hooks or Hooks()
        sched = sample_scheduler(self.model.cfg.diffusion, "ddim")
        ts = list(reversed(self._timesteps(sched, steps, level)))   # the timesteps `run` samples with
        ac = sched.alphas_cumprod.to(self.device)
        null = self.model.cond.null.expand_as(cond)

        k = [0]

        def invert(x, out_fn):
            # As diffusers' DDIMInverseScheduler: the model runs at the next (noisier) timestep,
            # its output is read at the level x sits at (clean at first), and x0 + epsilon are
            # carried to the next level. (At the clean level itself epsilon is unidentifiable.)
            t_prev = torch.zeros((), dtype=torch.long, device=self.device)
            x0 = None
            for t in ts:
                eps, x0 = eps_and_x0(sched, x, out_fn(x, t, x0), t_prev.expand(x.shape[0]))
                a = ac[t]
                x = a.sqrt() * x0 + (1 - a).sqrt() * eps
                t_prev = t.long()
                k[0] += 1
                if hooks.step:
                    hooks.step("invert", k[0], 2 * len(ts))
            return x

        z_clean = z
        zT = invert(z, lambda x, t, x0: self._eps_global(x, t, cond, null, 1.0))
        layout = self.model.prior_layout(z_clean)
        sc = self.model.cfg.point_prior.self_condition
        hT = invert(h, lambda x, t, x0: self._eps_points(x, t, z_clean, cond, null, 1.0, layout,
                                                         x0 if sc else None))
        return zT, hT


INTERPOLATION_LEVEL = 0.7   # how far interpolation inverts into the noise schedule (see ``interpolate``)


def slerp(a: torch.Tensor, b: torch.Tensor, w: float) -> torch.Tensor:
    """Spherical interpolation of Gaussian noise tensors (keeps their norm statistics)."""
    af, bf = a.flatten(1), b.flatten(1)
    cos = (af * bf).sum(1) / (af.norm(dim=1) * bf.norm(dim=1)).clamp(min=1e-8)
    omega = torch.arccos(cos.clamp(-1 + 1e-6, 1 - 1e-6)).view(-1, *[1] * (a.dim() - 1))
    return (torch.sin((1 - w) * omega) * a + torch.sin(w * omega) * b) / torch.sin(omega)


@torch.no_grad()
def interpolate(sampler: LatentSampler, points_a: torch.Tensor, points_b: torch.Tensor, n: int, *,
                cond: torch.Tensor | None = None, steps: int = 25, n_points: int = 2048,
                generator: torch.Generator | None = None, hooks: Hooks | None = None,
                level: float = INTERPOLATION_LEVEL) -> torch.Tensor:
    """``n`` shapes (n×n_points×3) morphing from shape A to shape B (each N×3, canonical frame).

    Both are encoded, DDIM-inverted to ``level`` of the noise schedule, the two noisy latents
    are slerped and sampled back with (unguided) DDIM, so the end points are close to the
    inputs' reconstructions. Not all the way (level 1): at the end of a zero-terminal-SNR
    schedule (v-prediction, "trailing") the latent is pure noise and a few-step inversion
    loses the shape.
    ``hooks.step`` sees one count over both phases (stage "invert", then the sampling stages;
    4 × steps in all); previews come from the sampling phase.
    """
    m = sampler.model
    hooks = hooks or Hooks()
    if cond is None:
        cond = m.cond.null[None]
    z, h = sampler.encode(torch.stack([points_a, points_b]), generator)
    n_inv = [0]

    def inv_step(stage: str, k: int, total: int) -> None:
        n_inv[0] = total
        if hooks.step:
            hooks.step(stage, k, 2 * total)

    zT, hT = sampler.ddim_invert(z, h, cond.expand(2, -1), steps, hooks=Hooks(step=inv_step), level=level)
    run_hooks = Hooks(step=(lambda stage, k, total: hooks.step(stage, n_inv[0] + k, n_inv[0] + total))
                      if hooks.step else None,
                      want_preview=(lambda k: hooks.want_preview(n_inv[0] + k)) if hooks.want_preview else None,
                      preview=hooks.preview, preview_points=hooks.preview_points)
    ws = torch.linspace(0, 1, n).tolist()
    zn = torch.cat([slerp(zT[:1], zT[1:], w) for w in ws])
    hn = torch.cat([slerp(hT[:1], hT[1:], w) for w in ws])
    return sampler.run(cond.expand(n, -1), n_points=n_points, steps=steps, guidance=1.0, sampler="ddim",
                       generator=generator, z_noise=zn, h_noise=hn, hooks=run_hooks, noise_level=level)
