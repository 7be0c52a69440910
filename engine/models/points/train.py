"""Training stages of the point model, LSGM-style:

1. ``vae``:   the hierarchical VAE with Chamfer reconstruction + small KL;
2. ``prior``: the dataset is encoded once (posterior means/log-variances of a few random
   point subsets per shape); the global prior and the point prior (conditioned on the
   clean global latent) are trained on posterior samples with the DDPM loss (epsilon or v
   target, optional Min-SNR weighting), condition dropout for classifier-free guidance, a
   cosine learning-rate decay and an EMA of their weights. Every ``val_every_s`` the EMA
   priors sample the val split's categories and their 1-NNA-CD against val shapes is
   logged; the best such model is kept in ``<state>/best``.
   With ``global_prior.shape_code`` the stage ``code`` runs first: the shape-code
   autoencoder of the latent points' layout (``shape_code.py``) is trained on the same
   cached latents, and its code becomes the priors' global latent.
3. ``decoder`` (optional): the encoder frozen, the decoder alone fine-tuned on posterior
   samples with Chamfer plus an exact-matching EMD term. Chamfer lets decoded points
   bunch into streaks (every target point only needs *a* neighbour), which 1-NNA-EMD
   punishes; the latent space does not move, so trained priors stay valid.
4. ``expert`` (with ``point_prior.expert_t`` > 0): a second point prior, started from the
   trained one, is fine-tuned on the timesteps below ``expert_t`` alone and denoises them
   when sampling (the low-noise expert); everything else is frozen.
5. ``joint`` (optional, LSGM's end-to-end stage): encoder, decoder and priors fine-tuned
   together. The KL of the VAE becomes the priors' diffusion loss on the posterior samples
   (cross-entropy, its gradient reaching the encoder) minus the posterior entropy, so the
   encoder is pulled towards latents the priors model well while the priors follow it.

Every stage is resumable (``<state>/``: weights, optimizer, step, RNG) and checkpoint
the model folder (``config.json`` + ``model.safetensors``) every ``ckpt_every_s`` seconds.
Under ``torchrun`` the VAE and prior steps run data-parallel (DDP); rank 0 writes files.
"""

from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from .config import PointsConfig
from .data import PointSets
from .latent_order import fit_template
from .losses import chamfer, emd_matched, gaussian_kl
from .model import PointsModel
from .sampler import train_scheduler, x0_from_output


@dataclass
class TrainConfig:
    seed: int = 0
    # VAE stage
    vae_iters: int = 20000
    vae_minutes: float = 1e9          # wall-clock budget; the stage ends at whichever comes first
    vae_batch: int = 16
    vae_lr: float = 1e-3
    n_enc_points: int = 2048          # encoder input
    n_rec_points: int = 1024          # decoded points compared (Chamfer) against a same-size subset
    kl_z: float = 1e-4                # KL weights on the per-element mean KL
    kl_h: float = 1e-4
    kl_warmup: int = 1000
    lr_warmup: int = 200
    # prior stage
    prior_iters: int = 50000
    prior_minutes: float = 1e9
    prior_batch: int = 64
    prior_lr: float = 5e-4
    prior_lr_final: float = 0.1       # cosine decay to this fraction of prior_lr over the budget
    min_snr_gamma: float = 0.0        # Min-SNR-gamma loss weighting (Hang et al. 2023); 0: plain MSE
    encode_repeats: int = 2           # random point subsets encoded per training shape
    # Scale of the posterior noise on the latents the priors learn: 1 draws posterior samples
    # (LSGM); 0 trains on the posterior means, which the decoder reconstructs as well and whose
    # latent points lie evenly on the surface. A fine-tune on the means scored worse on val
    # than the shipped priors (MODEL.md, Training step 8).
    prior_latent_noise: float = 1.0
    # A model folder whose trained priors start this prior stage (when it is not resumed). A
    # tensor that grew in the new config (e.g. ``global_prior.extents`` adds global channels)
    # is zero-padded, so the new inputs start unused and the warm start computes what it did.
    prior_init: str = ""
    ema: float = 0.999
    # expert stage (``point_prior.expert_t`` > 0): the low-noise point prior, started from the
    # trained point prior; lr decays as in the prior stage (cosine to prior_lr_final)
    expert_iters: int = 50000
    expert_minutes: float = 1e9
    expert_lr: float = 2e-4
    # code stage (``global_prior.shape_code`` > 0): the shape-code autoencoder of the latent
    # points' layout, on the cached latents of the frozen VAE
    code_iters: int = 4000
    code_minutes: float = 1e9
    code_batch: int = 64
    code_lr: float = 1e-3
    code_noise: float = 0.05          # std of the noise added to the code (range (-1, 1)) before decoding
    # decoder stage: encoder frozen, decoder fine-tuned with Chamfer + EMD
    decoder_iters: int = 0
    decoder_minutes: float = 1e9
    decoder_batch: int = 16
    decoder_lr: float = 1e-4
    decoder_emd_weight: float = 0.1     # EMD is in units, Chamfer in squared units: 0.1 balances their gradients
    decoder_emd_points: int = 512       # decoded/target points matched exactly per shape (O(N^3))
    # With decoder_sdedit > 0, a share (decoder_sdedit_frac) of every decoder batch is decoded
    # from what the trained priors make of the shapes' own latents: noised to a random SDEdit
    # strength up to decoder_sdedit and denoised (decoder_sdedit_steps, guidance 1), against
    # the shapes' points. The priors leave latent points bunched at low noise (MODEL.md,
    # Training step 7); the decoder learns to draw an even surface from such latents.
    decoder_sdedit: float = 0.0
    decoder_sdedit_frac: float = 0.5
    decoder_sdedit_steps: int = 8
    # joint stage (LSGM end to end): VAE and priors fine-tuned together
    joint_iters: int = 0
    joint_minutes: float = 1e9
    joint_batch: int = 16
    joint_lr_vae: float = 2e-5
    joint_lr_prior: float = 1e-4
    joint_prior_weight: float = 1e-3  # weight of the priors' cross-entropy (per element) for the encoder
    # calibrate stage (``calibration.py``): samples per category whose extents fit the map
    calibration_samples: int = 128
    calibration_seed: int = 1000
    # bookkeeping
    ckpt_every_s: float = 120.0
    val_shapes: int = 64
    val_every_s: float = 600.0        # 1-NNA validation of the priors (EMA) on the val split
    val_per_category: int = 16        # samples and val shapes per category for that validation
    val_steps: int = 25
    # None: the model config's ``diffusion.guidance``, the scale the checkpoint ships with.
    # A fixed 1.5 here ranked the fourth checkpoint's priors at a scale that scores 8 points
    # worse on val than the shipped 1.0 (MODEL.md, Training step 5).
    val_guidance: float | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (d or {}).items() if k in names})


# The modules the prior stage trains (and the joint stage keeps an EMA of).
PRIOR_MODULES = ("global_prior", "point_prior", "cond")


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _agree_to_stop(stop: bool, device: str) -> bool:
    """Under DDP every rank must leave the loop at the same step (wall-clock budgets differ
    slightly per rank): stop when any rank wants to."""
    if _world() == 1:
        return stop
    import torch.distributed as dist
    flag = torch.tensor([1.0 if stop else 0.0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item() > 0)


def _cosine_scale(step: int, iters: int, t0: float, minutes: float, final: float = 0.1) -> float:
    """Learning-rate factor decaying from 1 to ``final`` (cosine) over whichever budget,
    ``iters`` steps or ``minutes`` of wall time since ``t0``, runs out first."""
    frac = min(1.0, max(step / max(1, iters), (time.time() - t0) / 60 / minutes))
    return float(final + (1 - final) * 0.5 * (1 + np.cos(np.pi * frac)))


def _process_device(device: str) -> str:
    """The device of this process: under torchrun a plain ``cuda`` means the GPU of its
    ``LOCAL_RANK`` (one GPU per process), made current so that bare ``cuda`` tensors land there."""
    if device == "cuda" and _world() > 1:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        torch.cuda.set_device(device)
    return device


def _ddp_wrap(module: torch.nn.Module) -> torch.nn.Module:
    if _world() > 1:
        import torch.distributed as dist
        dev = next(module.parameters()).device
        if not dist.is_initialized():
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        return torch.nn.parallel.DistributedDataParallel(module, device_ids=[dev.index] if dev.type == "cuda" else None)
    return module


class Trainer:
    """Runs the stages for one model folder ``out`` with resumable state in ``state``."""

    def __init__(self, cfg: PointsConfig, tcfg: TrainConfig, train: PointSets, val: PointSets,
                 out: Path, state: Path, device: str = "cpu", log=print) -> None:
        self.cfg, self.tcfg, self.train, self.val = cfg, tcfg, train, val
        self.out, self.state, self.device, self.log = Path(out), Path(state), _process_device(device), log
        self.state.mkdir(parents=True, exist_ok=True)
        self.model = PointsModel(cfg).to(self.device)
        # Every process trains; only rank 0 writes files and talks.
        self.log = log if _rank() == 0 else (lambda *_a, **_k: None)
        self.rng = np.random.default_rng(tcfg.seed + _rank())
        torch.manual_seed(tcfg.seed + _rank())

    # ---------------------------------------------------------------- helpers
    def _logline(self, rec: dict[str, Any]) -> None:
        if _rank() == 0:
            with open(self.state / "log.jsonl", "a") as f:
                f.write(json.dumps(rec) + "\n")

    def _save_state(self, name: str, tensors: dict[str, torch.Tensor], opt: torch.optim.Optimizer, step: int,
                    extra: dict[str, Any] | None = None) -> None:
        if _rank() != 0:
            return
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(self.state / f"{name}.tmp"))
        (self.state / f"{name}.tmp").replace(self.state / f"{name}.safetensors")
        torch.save(opt.state_dict(), self.state / f"{name}_opt.pt.tmp")
        (self.state / f"{name}_opt.pt.tmp").replace(self.state / f"{name}_opt.pt")
        (self.state / f"{name}.json").write_text(json.dumps({"step": step, **(extra or {})}))

    def _load_state(self, name: str, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], int, dict]:
        meta = json.loads((self.state / f"{name}.json").read_text())
        tensors = load_file(str(self.state / f"{name}.safetensors"), device=self.device)
        opt.load_state_dict(torch.load(self.state / f"{name}_opt.pt", weights_only=True, map_location=self.device))
        return tensors, int(meta["step"]), meta

    def _resume_module(self, name: str, opt: torch.optim.Optimizer, module: torch.nn.Module,
                       label: str) -> tuple[int, float]:
        """Load a single-module stage's saved weights and optimizer; returns (step, elapsed seconds)."""
        tensors, step, meta = self._load_state(name, opt)
        module.load_state_dict(tensors)
        self.log(f"resumed {label} at step {step}")
        return step, float(meta.get("elapsed", 0.0))

    def _resume_nets(self, name: str, opt: torch.optim.Optimizer, nets: torch.nn.Module,
                     ema: torch.nn.Module) -> tuple[int, float]:
        """Load a stage's saved live and EMA weights and optimizer; returns (step, elapsed seconds)."""
        tensors, step, meta = self._load_state(name, opt)
        nets.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
        self.log(f"resumed {name} stage at step {step}")
        return step, float(meta.get("elapsed", 0.0))

    def has_state(self, name: str) -> bool:
        return (self.state / f"{name}.json").is_file()

    def stage_done(self, name: str) -> bool:
        """Whether the saved state of stage ``name`` says it ran to the end of its budget."""
        return self.has_state(name) and bool(json.loads((self.state / f"{name}.json").read_text()).get("done"))

    def save_model(self) -> None:
        if _rank() == 0:
            self.model.save(self.out)

    def load_model_if_any(self, vae_only: bool = False) -> bool:
        """Load the model folder's weights (only what the priors are trained on with
        ``vae_only``: the VAE and the shape code if any, so the priors may have another config
        than the one the VAE was trained with)."""
        path = self.out / "model.safetensors"
        if not path.is_file():
            return False
        state = load_file(str(path), device=self.device)
        if vae_only:
            self.model.vae.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("vae.")})
            if self.cfg.global_prior.shape_code:
                for name in ("shape_code", "layout"):
                    part = {k[len(name) + 1:]: v for k, v in state.items() if k.startswith(name + ".")}
                    if part:
                        getattr(self.model, name).load_state_dict(part)
        else:
            missing, unexpected = self.model.load_state_dict(state, strict=False)
            if unexpected or any(not k.startswith("point_prior_low.") for k in missing):
                raise ValueError(f"{path} does not fit the model config (missing {missing[:3]}, "
                                 f"unexpected {unexpected[:3]}); train it with this config")
            if missing:
                # A folder trained before its config gained a low-noise expert has none yet.
                self.model.expert_from_point_prior()
        return True

    # ---------------------------------------------------------------- VAE
    @torch.no_grad()
    def _val_reconstruction_mean(self, metric, n_points: int, n: int | None = None) -> float:
        """Mean of ``metric(reconstruction, input)`` (per shape, B×P×3 each) over ``n`` val shapes
        of ``n_points`` points, reconstructed from the posterior means."""
        vae = self.model.vae
        was_training = vae.training
        vae.eval()
        n = min(n or self.tcfg.val_shapes, len(self.val))
        idx = np.linspace(0, len(self.val) - 1, n).astype(int)
        g = torch.Generator(device=self.device).manual_seed(0)
        total = 0.0
        for s in range(0, n, 16):
            x, _ = self.val.batch(idx[s:s + 16], n_points, np.random.default_rng(s))
            x = x.to(self.device)
            post = vae.encode(x, g)
            total += metric(vae.decode(post["z_mu"], post["h_mu"], n_points, g), x).sum().item()
        vae.train(was_training)
        return total / n

    def val_reconstruction(self, n: int | None = None) -> float:
        """Mean Chamfer (squared distances, 2048 vs 2048) of posterior-mean reconstructions on val."""
        return self._val_reconstruction_mean(chamfer, self.cfg.n_points, n)

    def val_reconstruction_emd(self, n: int | None = None, n_points: int = 512) -> float:
        """Mean EMD (units) of posterior-mean reconstructions on val, ``n_points`` each."""
        return self._val_reconstruction_mean(emd_matched, n_points, n)

    def train_vae(self, resume: bool = False) -> None:
        t, vae = self.tcfg, self.model.vae
        opt = torch.optim.AdamW(vae.parameters(), lr=t.vae_lr, weight_decay=1e-4)
        step, elapsed = 0, 0.0
        if resume and self.has_state("vae"):
            step, elapsed = self._resume_module("vae", opt, vae, "VAE")
        ddp = _ddp_wrap(vae)
        vae.train()
        # t0 counts the wall time of earlier runs too, so budgets and the schedule survive resumes.
        t0, last_ckpt = time.time() - elapsed, time.time()
        bar = tqdm(total=t.vae_iters, initial=step, desc="vae", disable=_rank() != 0, mininterval=10)
        while not _agree_to_stop(step >= t.vae_iters or (time.time() - t0) / 60 >= t.vae_minutes, self.device):
            lr = t.vae_lr * min(1.0, (step + 1) / t.lr_warmup) * _cosine_scale(step, t.vae_iters, t0, t.vae_minutes)
            _set_lr(opt, lr)
            idx = self.rng.integers(0, len(self.train), t.vae_batch)
            x, _ = self.train.batch(idx, t.n_enc_points, self.rng)
            x = x.to(self.device)
            rec, post = ddp(x, t.n_rec_points)
            target = x[:, torch.randperm(x.shape[1], device=self.device)[:t.n_rec_points]]
            rec_loss = chamfer(rec, target).mean()
            w = min(1.0, step / max(1, t.kl_warmup))
            kl_z = gaussian_kl(post["z_mu"], post["z_logvar"]).mean() / post["z_mu"][0].numel()
            kl_h = gaussian_kl(post["h_mu"], post["h_logvar"]).mean() / post["h_mu"][0].numel()
            loss = rec_loss + w * (t.kl_z * kl_z + t.kl_h * kl_h)
            _optimizer_step(opt, loss, vae.parameters())
            step += 1
            bar.update(1)
            if step % 50 == 0:
                sx = post["h_logvar"][..., :3].mul(0.5).exp().mean().item()
                rec_ = {"stage": "vae", "step": step, "rec": rec_loss.item(), "kl_z": kl_z.item(), "kl_h": kl_h.item(),
                        "std_xyz": sx, "lr": lr, "t": time.time() - t0}
                bar.set_postfix(rec=f"{rec_loss.item():.5f}", sxyz=f"{sx:.4f}")
                self._logline(rec_)
            if time.time() - last_ckpt > t.ckpt_every_s:
                self._vae_checkpoint(opt, step, t0)
                last_ckpt = time.time()
        bar.close()
        self._vae_checkpoint(opt, step, t0, done=True)

    def _vae_checkpoint(self, opt, step: int, t0: float, done: bool = False) -> None:
        val = self.val_reconstruction()
        self._logline({"stage": "vae", "step": step, "val_chamfer": val, "t": time.time() - t0})
        self.log(f"vae step {step}: val reconstruction Chamfer {val:.6f}")
        self._save_state("vae", self.model.vae.state_dict(), opt, step,
                         {"val_chamfer": val, "done": done, "elapsed": time.time() - t0})
        self.save_model()

    def train_decoder(self, resume: bool = False) -> None:
        """Fine-tune the decoder alone (``--stage decoder``), from a trained model folder."""
        t, vae, dev = self.tcfg, self.model.vae, self.device
        vae.encoder.requires_grad_(False)
        for name in PRIOR_MODULES:                      # read (decoder_sdedit), never trained here
            getattr(self.model, name).requires_grad_(False).eval()
        opt = torch.optim.AdamW(vae.decoder.parameters(), lr=t.decoder_lr, weight_decay=1e-4)
        step, elapsed = 0, 0.0
        if resume and self.has_state("decoder"):
            step, elapsed = self._resume_module("decoder", opt, vae.decoder, "decoder stage")
        ddp = _ddp_wrap(_DecoderObjective(vae, t, self.model))
        vae.train()
        vae.encoder.eval()
        t0, last_ckpt = time.time() - elapsed, time.time()
        bar = tqdm(total=t.decoder_iters, initial=step, desc="decoder", disable=_rank() != 0, mininterval=10)
        while not _agree_to_stop(step >= t.decoder_iters or (time.time() - t0) / 60 >= t.decoder_minutes, dev):
            lr = t.decoder_lr * min(1.0, (step + 1) / 50) * _cosine_scale(step, t.decoder_iters, t0, t.decoder_minutes)
            _set_lr(opt, lr)
            idx = self.rng.integers(0, len(self.train), t.decoder_batch)
            x, ids = self.train.batch(idx, t.n_enc_points, self.rng)
            cd, emd = ddp(x.to(dev), ids.to(dev))
            loss = cd + t.decoder_emd_weight * emd
            _optimizer_step(opt, loss, vae.decoder.parameters())
            step += 1
            bar.update(1)
            if step % 25 == 0:
                bar.set_postfix(cd=f"{cd.item():.5f}", emd=f"{emd.item():.4f}")
                self._logline({"stage": "decoder", "step": step, "rec": cd.item(), "emd": emd.item(), "lr": lr,
                               "t": time.time() - t0})
            if time.time() - last_ckpt > t.ckpt_every_s:
                self._decoder_checkpoint(opt, step, t0)
                last_ckpt = time.time()
        bar.close()
        self._decoder_checkpoint(opt, step, t0, done=True)

    def _decoder_checkpoint(self, opt, step: int, t0: float, done: bool = False) -> None:
        cd, emd = self.val_reconstruction(), self.val_reconstruction_emd()
        self._logline({"stage": "decoder", "step": step, "val_chamfer": cd, "val_emd": emd, "t": time.time() - t0})
        self.log(f"decoder step {step}: val reconstruction Chamfer {cd:.6f}, EMD {emd:.5f}")
        self._save_state("decoder", self.model.vae.decoder.state_dict(), opt, step,
                         {"val_chamfer": cd, "val_emd": emd, "done": done, "elapsed": time.time() - t0})
        self.save_model()

    # ---------------------------------------------------------------- shape code
    def train_code(self, resume: bool = False) -> None:
        """Train the shape-code autoencoder (``--stage code``) on the frozen VAE's latents:
        the encoder sees posterior samples of the latent xyz, the decoder rebuilds their
        posterior means from the code plus ``code_noise``; Chamfer in squared canonical units."""
        t, m, dev = self.tcfg, self.model, self.device
        if not self.cfg.global_prior.shape_code:
            raise ValueError("the code stage needs a model config with global_prior.shape_code > 0")
        lat = {k: v.to(dev) for k, v in self._latents().items() if k.startswith("h_")}
        val_layout = self.encode_dataset(self.val, 1)["h_mu"][..., :3].to(dev)
        nets = torch.nn.ModuleDict({"encoder": m.shape_code, "decoder": m.layout})
        opt = torch.optim.AdamW(nets.parameters(), lr=t.code_lr, weight_decay=1e-4)
        step, elapsed = 0, 0.0
        if resume and self.has_state("code"):
            step, elapsed = self._resume_module("code", opt, nets, "code stage")
        ddp = _ddp_wrap(_CodeObjective(nets, t.code_noise))
        nets.train()
        n = lat["h_mu"].shape[0]
        gen = torch.Generator(device=dev).manual_seed(t.seed + 29 + step + 1000003 * _rank())
        t0, last_ckpt = time.time() - elapsed, time.time()
        bar = tqdm(total=t.code_iters, initial=step, desc="code", disable=_rank() != 0, mininterval=10)
        while not _agree_to_stop(step >= t.code_iters or (time.time() - t0) / 60 >= t.code_minutes, dev):
            lr = t.code_lr * min(1.0, (step + 1) / 100) * _cosine_scale(step, t.code_iters, t0, t.code_minutes)
            _set_lr(opt, lr)
            idx = torch.randint(0, n, (t.code_batch,), device=dev, generator=gen)
            h = m.vae.sample_posterior(lat["h_mu"][idx, :, :3], lat["h_logvar"][idx, :, :3])
            loss = ddp(h, lat["h_mu"][idx, :, :3])
            _optimizer_step(opt, loss, nets.parameters())
            step += 1
            bar.update(1)
            if step % 50 == 0:
                bar.set_postfix(rec=f"{loss.item():.5f}")
                self._logline({"stage": "code", "step": step, "rec": loss.item(), "lr": lr, "t": time.time() - t0})
            if time.time() - last_ckpt > t.ckpt_every_s:
                self._code_checkpoint(nets, opt, step, t0, val_layout)
                last_ckpt = time.time()
        bar.close()
        self._code_checkpoint(nets, opt, step, t0, val_layout, done=True)

    @torch.no_grad()
    def val_code(self, nets: torch.nn.ModuleDict, x: torch.Tensor) -> dict[str, float]:
        """Layout Chamfer on val layouts ``x`` (B×M×3) from their clean codes, and from the code
        of another shape (what an uninformative code would give): the gap is what the code carries."""
        was = nets.training
        nets.eval()
        code = nets["encoder"](x)
        own = chamfer(nets["decoder"](code), x).mean().item()
        other = chamfer(nets["decoder"](code.roll(1, 0)), x).mean().item()
        nets.train(was)
        return {"val_layout_chamfer": own, "val_layout_chamfer_other_code": other}

    def _code_checkpoint(self, nets, opt, step: int, t0: float, val_layout: torch.Tensor,
                         done: bool = False) -> None:
        res = self.val_code(nets, val_layout)
        self._logline({"stage": "code", "step": step, **res, "t": time.time() - t0})
        self.log(f"code step {step}: val layout Chamfer {res['val_layout_chamfer']:.6f} "
                 f"(another shape's code: {res['val_layout_chamfer_other_code']:.6f})")
        self._save_state("code", nets.state_dict(), opt, step,
                         {**res, "done": done, "elapsed": time.time() - t0})
        self.save_model()

    # ---------------------------------------------------------------- priors
    @torch.no_grad()
    def encode_dataset(self, sets: PointSets, repeats: int) -> dict[str, torch.Tensor]:
        """Posterior parameters of every shape, ``repeats`` random subsets each."""
        vae = self.model.vae.eval()
        out: dict[str, list[torch.Tensor]] = {"z_mu": [], "z_logvar": [], "h_mu": [], "h_logvar": [], "labels": []}
        rng = np.random.default_rng(1234)
        order = np.tile(np.arange(len(sets)), repeats)
        for s in tqdm(range(0, len(order), 32), desc="encode", disable=_rank() != 0, mininterval=10):
            idx = order[s:s + 32]
            x, y = sets.batch(idx, self.cfg.n_points, rng)
            post = vae.encode(x.to(self.device))
            for k in ("z_mu", "z_logvar", "h_mu", "h_logvar"):
                out[k].append(post[k].cpu())
            out["labels"].append(y)
        return {k: torch.cat(v) for k, v in out.items()}

    def _latents(self) -> dict[str, torch.Tensor]:
        # The cache belongs to one VAE: its name carries the VAE's step.
        vae_step = json.loads((self.state / "vae.json").read_text())["step"] if self.has_state("vae") else 0
        # ... and to one training set: latents of data that changed since are encoded again.
        path = self.state / f"latents_vae{vae_step}.safetensors"
        data = self.train.fingerprint()
        if path.is_file():
            from safetensors import safe_open
            with safe_open(str(path), "pt") as f:
                if (f.metadata() or {}).get("data") == data:
                    return {k: f.get_tensor(k) for k in f.keys()}
            self.log(f"{path.name} was encoded from other training data: encoding again")
        lat = self.encode_dataset(self.train, self.tcfg.encode_repeats)
        if _rank() == 0:
            save_file(lat, str(path), metadata={"data": data})
        return lat

    @torch.no_grad()
    def _in_slot_order(self, lat: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """With ``point_prior.slot_order``: fit the model's slot template to the posterior means
        (the same latents give the same template, so a resumed run gets it back) and put every
        encoding's latent points in its order. Unchanged otherwise."""
        m = self.model
        if not self.cfg.point_prior.slot_order:
            return lat
        xyz = lat["h_mu"][..., :3].numpy()
        self.log(f"slot order: fitting a template of {xyz.shape[1]} points to {len(xyz)} encodings")
        m.slot_template.copy_(torch.from_numpy(fit_template(xyz)).to(m.slot_template))
        h_mu, h_logvar = m.to_slot_order(lat["h_mu"], lat["h_logvar"])
        return {**lat, "h_mu": h_mu, "h_logvar": h_logvar}

    @torch.no_grad()
    def _set_stats(self, lat: dict[str, torch.Tensor]) -> None:
        g = torch.Generator().manual_seed(0)
        m = self.model
        z = m.vae.sample_posterior(lat["z_mu"], lat["z_logvar"], g)
        h = m.vae.sample_posterior(lat["h_mu"], lat["h_logvar"], g)
        if self.cfg.global_prior.shape_code:
            m.z_fixed.copy_(lat["z_mu"].mean(0).to(m.z_fixed))
        dev = m.z_mean.device
        # In chunks: a shape code's encoder would hold every shape's per-point features at once.
        z = torch.cat([m.global_latent(z[s:s + 512].to(dev), h[s:s + 512].to(dev)).cpu()
                       for s in range(0, len(z), 512)])
        m.z_mean.copy_(z.mean(0).to(m.z_mean))
        m.z_std.copy_(z.std(0).clamp(min=1e-3).to(m.z_std))
        hf = h.reshape(-1, h.shape[-1])
        m.h_mean.copy_(hf.mean(0).to(m.h_mean))
        m.h_std.copy_(hf.std(0).clamp(min=1e-3).to(m.h_std))

    def train_prior(self, resume: bool = False, expert: bool = False) -> None:
        """The prior stage; with ``expert`` the expert stage: only ``point_prior_low`` trains,
        on timesteps below ``point_prior.expert_t``, started from the trained point prior (the
        model folder's, loaded by the caller), with the trained priors, condition embedding and
        latent statistics frozen."""
        t, m, dev = self.tcfg, self.model, self.device
        name = "expert" if expert else "prior"
        val_stage = "expert" if expert else "priors"
        if expert and not self.cfg.point_prior.expert_t:
            raise ValueError("the expert stage needs a model config with point_prior.expert_t > 0")
        iters, minutes, base_lr = ((t.expert_iters, t.expert_minutes, t.expert_lr) if expert
                                   else (t.prior_iters, t.prior_minutes, t.prior_lr))
        lat = self._in_slot_order(self._latents())
        if not expert:
            self._set_stats(lat)
        lat = {k: v.to(dev) for k, v in lat.items()}
        trainable = torch.nn.ModuleDict({"point_prior_low": m.point_prior_low} if expert
                                        else {k: getattr(m, k) for k in PRIOR_MODULES})
        params = list(trainable.parameters())
        opt = torch.optim.AdamW(params, lr=base_lr, weight_decay=0.0)
        step, elapsed = 0, 0.0
        if resume and self.has_state(name):
            ema = copy.deepcopy(trainable).requires_grad_(False)
            step, elapsed = self._resume_nets(name, opt, trainable, ema)
        else:
            if expert:
                m.expert_from_point_prior()
            elif t.prior_init:
                self.init_priors_from(Path(t.prior_init))
            ema = copy.deepcopy(trainable).requires_grad_(False)
        net = trainable
        ddp = _ddp_wrap(_PriorObjective(trainable, self, expert))
        T = self.cfg.diffusion.num_train_timesteps
        t_h = self.cfg.point_prior.expert_t if expert else T
        n = lat["z_mu"].shape[0]
        t0, last_ckpt, last_val = time.time() - elapsed, time.time(), time.time()
        bar = tqdm(total=iters, initial=step, desc=name, disable=_rank() != 0, mininterval=10)
        gen = torch.Generator(device=dev).manual_seed(t.seed + 17 + step + 1000003 * _rank())
        while not _agree_to_stop(step >= iters or (time.time() - t0) / 60 >= minutes, dev):
            lr_scale = _cosine_scale(step, iters, t0, minutes, t.prior_lr_final)
            lr = float(base_lr * min(1.0, (step + 1) / 500) * lr_scale)
            _set_lr(opt, lr)
            idx = torch.randint(0, n, (t.prior_batch,), device=dev, generator=gen)
            with torch.no_grad():
                z = m.vae.sample_posterior(lat["z_mu"][idx], lat["z_logvar"][idx], scale=t.prior_latent_noise)
                h = m.vae.sample_posterior(lat["h_mu"][idx], lat["h_logvar"][idx], scale=t.prior_latent_noise)
                z, h = m.norm_z(m.global_latent(z, h)), m.norm_h(h)
            ids = m.cond.drop(lat["labels"][idx], self.cfg.cond.p_uncond, gen)
            tz = torch.randint(0, T, (z.shape[0],), device=dev, generator=gen)
            th = torch.randint(0, t_h, (z.shape[0],), device=dev, generator=gen)
            # Through the DDP wrapper, so the gradients are averaged over ranks.
            loss_z, loss_h = ddp(z, h, ids, tz, th)
            loss = loss_z + loss_h
            _optimizer_step(opt, loss, params)
            step += 1
            decay = min(t.ema, (1 + step) / (10 + step))
            with torch.no_grad():
                for pe, pn in zip(ema.parameters(), net.parameters()):
                    pe.lerp_(pn, 1 - decay)
            bar.update(1)
            if step % 50 == 0:
                bar.set_postfix(lz=f"{loss_z.item():.4f}", lh=f"{loss_h.item():.4f}")
                self._logline({"stage": name, "step": step, "loss_z": loss_z.item(), "loss_h": loss_h.item(),
                               "t": time.time() - t0})
            if time.time() - last_ckpt > t.ckpt_every_s:
                self._prior_checkpoint(net, ema, opt, step, elapsed=time.time() - t0, name=name)
                last_ckpt = time.time()
            if t.val_every_s > 0 and time.time() - last_val > t.val_every_s:
                self._prior_validation(net, ema, step, stage=val_stage)
                last_val = time.time()
        bar.close()
        self._prior_checkpoint(net, ema, opt, step, done=True, elapsed=time.time() - t0, name=name)
        if t.val_every_s > 0:
            self._prior_validation(net, ema, step, stage=val_stage)

    def init_priors_from(self, folder: Path) -> None:
        """Copy the priors and condition embedding of the model folder ``folder`` into this model.

        Between a folder with and one without a shape code (``global_prior.shape_code``) the
        global latent means something else: the global prior keeps its fresh weights and the
        point prior's input weights for the global latent start at zero. A layout
        cross-attention or a local-geometry branch the folder lacks keeps its fresh weights
        (both start at zero).

        Equal shapes are copied; a tensor that is larger here in some dimensions (and smaller in
        none) gets the old values in its leading block and zeros elsewhere. Anything else is an
        error: the two configs are not related by growth.
        """
        src = load_file(str(Path(folder) / "model.safetensors"), device=self.device)
        own = self.model.state_dict()
        src_code = PointsConfig.load(Path(folder) / "config.json").global_prior.shape_code
        fresh = src_code != self.cfg.global_prior.shape_code
        new = {}
        for k, v in own.items():
            if k.split(".", 1)[0] not in PRIOR_MODULES:
                continue
            if fresh and k.startswith("global_prior."):
                continue
            if fresh and k == "point_prior.zemb.0.weight":
                new[k] = torch.zeros_like(v)
                continue
            if k not in src:
                # The layout cross-attention, the local-geometry branch and the slot embeddings
                # start at zero: from fresh weights they start unused.
                if k.startswith(("point_prior.cross.", "point_prior.layout_embed.", "point_prior.local.",
                                 "point_prior.slot_embed")):
                    continue
                raise ValueError(f"prior_init {folder}: no tensor {k}")
            old = src[k]
            if old.shape == v.shape:
                new[k] = old
            elif old.dim() == v.dim() and all(a <= b for a, b in zip(old.shape, v.shape)):
                pad = torch.zeros_like(v)
                pad[tuple(slice(0, n) for n in old.shape)] = old
                new[k] = pad
            else:
                raise ValueError(f"prior_init {folder}: {k} has shape {tuple(old.shape)}, this config "
                                 f"{tuple(v.shape)}")
        self.model.load_state_dict(new, strict=False)
        self.log(f"priors initialised from {folder} ({len(new)} tensors)")

    # ---------------------------------------------------------------- joint
    def train_joint(self, resume: bool = False) -> None:
        """LSGM's end-to-end stage, from a trained VAE and priors (``--stage joint``)."""
        t, m, dev = self.tcfg, self.model, self.device
        vae_params = list(m.vae.parameters())
        prior_params = list(m.global_prior.parameters()) + list(m.point_prior.parameters()) + list(m.cond.parameters())
        opt = torch.optim.AdamW([{"params": vae_params, "lr": t.joint_lr_vae, "weight_decay": 1e-4},
                                 {"params": prior_params, "lr": t.joint_lr_prior, "weight_decay": 0.0}])
        trainable = torch.nn.ModuleDict({"vae": m.vae, "global_prior": m.global_prior, "point_prior": m.point_prior,
                                         "cond": m.cond})
        ema = copy.deepcopy(torch.nn.ModuleDict({k: trainable[k] for k in PRIOR_MODULES}))
        ema.requires_grad_(False)
        step, elapsed = 0, 0.0
        if resume and self.has_state("joint"):
            step, elapsed = self._resume_nets("joint", opt, trainable, ema)
        net = trainable
        ddp = _ddp_wrap(_JointObjective(trainable, self))
        pri = torch.nn.ModuleDict({k: net[k] for k in PRIOR_MODULES})
        t0, last_ckpt = time.time() - elapsed, time.time()
        gen = torch.Generator(device=dev).manual_seed(t.seed + 29 + step + 1000003 * _rank())
        bar = tqdm(total=t.joint_iters, initial=step, desc="joint", disable=_rank() != 0, mininterval=10)
        net.train()
        while not _agree_to_stop(step >= t.joint_iters or (time.time() - t0) / 60 >= t.joint_minutes, dev):
            lr_scale = _cosine_scale(step, t.joint_iters, t0, t.joint_minutes)
            for gparam, base in zip(opt.param_groups, (t.joint_lr_vae, t.joint_lr_prior)):
                gparam["lr"] = float(base * min(1.0, (step + 1) / 50) * lr_scale)
            idx = self.rng.integers(0, len(self.train), t.joint_batch)
            x, y = self.train.batch(idx, t.n_enc_points, self.rng)
            x, y = x.to(dev), y.to(dev)
            rec_loss, loss_z, loss_h, entropy = ddp(x, y, gen)
            # KL = cross-entropy under the priors - posterior entropy (per element, as in the VAE stage).
            loss = rec_loss + loss_z + loss_h - t.joint_prior_weight * entropy
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(vae_params, 1.0)
            torch.nn.utils.clip_grad_norm_(prior_params, 1.0)
            opt.step()
            step += 1
            with torch.no_grad():
                for pe, pn in zip(ema.parameters(), pri.parameters()):
                    pe.lerp_(pn, 1 - min(t.ema, (1 + step) / (10 + step)))
            bar.update(1)
            if step % 25 == 0:
                bar.set_postfix(rec=f"{rec_loss.item():.5f}", lh=f"{loss_h.item():.4f}")
                self._logline({"stage": "joint", "step": step, "rec": rec_loss.item(), "loss_z": loss_z.item(),
                               "loss_h": loss_h.item(), "loss": loss.item(), "t": time.time() - t0})
            if time.time() - last_ckpt > t.ckpt_every_s:
                self._joint_checkpoint(trainable, pri, ema, opt, step, time.time() - t0)
                last_ckpt = time.time()
        bar.close()
        self._joint_checkpoint(trainable, pri, ema, opt, step, time.time() - t0, done=True)
        if t.val_every_s > 0:
            self._prior_validation(pri, ema, step, stage="joint")

    def _joint_checkpoint(self, trainable, pri, ema, opt, step: int, elapsed: float, done: bool = False) -> None:
        tensors = {f"net.{k}": v for k, v in trainable.state_dict().items()}
        tensors.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
        self._save_state("joint", tensors, opt, step, {"done": done, "elapsed": elapsed})
        live = {k: v.clone() for k, v in pri.state_dict().items()}
        pri.load_state_dict(ema.state_dict())
        self.save_model()
        pri.load_state_dict(live)
        self.log(f"joint step {step}: checkpoint written")

    def _diffusion_loss(self, out: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Per-element MSE of a prior's output against its target (epsilon or v), Min-SNR weighted."""
        v_pred = self.cfg.diffusion.prediction_type == "v_prediction"
        target = a.sqrt() * eps - (1 - a).sqrt() * x0 if v_pred else eps
        err = ((out - target) ** 2).flatten(1).mean(1)
        gamma = self.tcfg.min_snr_gamma
        if gamma > 0:
            snr = (a / (1 - a)).flatten()
            # Min-SNR weights the x0 error by min(snr, gamma); an epsilon error is snr times an
            # x0 error, a v error snr + 1 times.
            w = snr.clamp(max=gamma) / (snr + 1 if v_pred else snr)
            err = err * w
        return err.mean()

    @property
    def val_guidance(self) -> float:
        """Guidance scale of the in-training validation: the training config's, else the model's."""
        g = self.tcfg.val_guidance
        return float(self.cfg.diffusion.guidance if g is None else g)

    @torch.no_grad()
    def val_nna(self, n: int | None = None) -> dict[str, float]:
        """1-NNA-CD (box-normalized, as ``latentforge eval points``) of ``n`` category-conditioned
        samples per category against ``n`` val shapes of it; plus their mean."""
        from engine.eval.metrics import compute_all_metrics

        from .sampler import LatentSampler
        n = n or self.tcfg.val_per_category
        m = self.model.eval()
        s = LatentSampler(m)
        res: dict[str, float] = {}
        for ci, c in enumerate(self.cfg.cond.categories):
            idx = np.flatnonzero(self.val.labels == ci)[:n]
            if len(idx) < 2:
                continue
            ref, _ = self.val.batch(idx, self.cfg.n_points, np.random.default_rng(ci))
            g = torch.Generator(device=self.device).manual_seed(ci)
            cond = s.condition(torch.full((len(idx),), ci, dtype=torch.long))
            x = s.run(cond, n_points=self.cfg.n_points, steps=self.tcfg.val_steps, guidance=self.val_guidance,
                      generator=g)
            res[c] = float(compute_all_metrics(x.cpu().numpy(), ref.numpy(), use_emd=False, seed=0)["1nna_cd"])
        m.train()
        res["mean"] = float(np.mean(list(res.values()))) if res else float("nan")
        return res

    def _prior_validation(self, net, ema, step: int, stage: str = "priors") -> None:
        if _rank() != 0:
            return
        live = {k: v.clone() for k, v in net.state_dict().items()}
        net.load_state_dict(ema.state_dict())
        t0 = time.time()
        res = self.val_nna()
        self._logline({"stage": "prior" if stage == "priors" else stage, "step": step, "val_1nna_cd": res, "val_seconds": time.time() - t0})
        best_file = self.state / "best.json"
        best = json.loads(best_file.read_text())["mean"] if best_file.is_file() else float("inf")
        msg = f"{stage} step {step}: val 1-NNA-CD mean {res['mean']:.3f} ({time.time() - t0:.0f} s)"
        if res["mean"] < best:
            self.model.save(self.state / "best")
            best_file.write_text(json.dumps({"step": step, **res}))
            msg += " (best so far: kept in state/best)"
        net.load_state_dict(live)
        self.log(msg)

    def _prior_checkpoint(self, net, ema, opt, step: int, done: bool = False, elapsed: float = 0.0,
                          name: str = "prior") -> None:
        tensors = {f"net.{k}": v for k, v in net.state_dict().items()}
        tensors.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
        self._save_state(name, tensors, opt, step, {"done": done, "elapsed": elapsed})
        self._logline({"stage": name, "step": step, "checkpoint": True, "t": elapsed})
        # The shipped model carries the EMA weights of the priors.
        live = {k: v.clone() for k, v in net.state_dict().items()}
        net.load_state_dict(ema.state_dict())
        if name == "prior" and self.cfg.point_prior.expert_t:
            self.model.expert_from_point_prior()
        self.save_model()
        net.load_state_dict(live)
        self.log(f"{name} step {step}: checkpoint written")


def _set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def _optimizer_step(opt: torch.optim.Optimizer, loss: torch.Tensor, params) -> None:
    """One step on ``loss``, gradients clipped to norm 1 over ``params``."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()


def _scale_grad(x: torch.Tensor, w: float) -> torch.Tensor:
    """``x`` in the forward pass; its gradient multiplied by ``w`` in the backward pass."""
    return x * w + x.detach() * (1 - w)


class _PriorObjective(torch.nn.Module):
    """The priors' diffusion losses as one module, so DDP sees (and syncs) a forward pass."""

    def __init__(self, nets: torch.nn.ModuleDict, trainer: "Trainer", expert: bool = False) -> None:
        """``expert``: ``nets`` holds only ``point_prior_low``; the condition embedding is the
        model's, frozen, and the global prior's loss is zero."""
        super().__init__()
        self.nets = nets
        self.expert = expert
        self.cond = [trainer.model.cond]              # list: frozen in the expert stage, not a submodule
        self.loss_fn = trainer._diffusion_loss
        # On the trainer's device: the timesteps that index it are drawn there.
        ac = train_scheduler(trainer.cfg.diffusion).alphas_cumprod.float().to(trainer.device)
        self.register_buffer("ac", ac, persistent=False)
        self.layout = [trainer.model.prior_layout]      # list: the frozen model is not a submodule
        self.prediction_type = trainer.cfg.diffusion.prediction_type

    def forward(self, z: torch.Tensor, h: torch.Tensor, ids: torch.Tensor, tz: torch.Tensor,
                th: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ez, eh = torch.randn_like(z), torch.randn_like(h)
        az, ah = self.ac[tz].unsqueeze(-1), self.ac[th].view(-1, 1, 1)
        if self.expert:
            with torch.no_grad():
                cond = self.cond[0](ids)
            loss_z = torch.zeros((), device=z.device)
        else:
            cond = self.nets["cond"](ids)
            loss_z = self.loss_fn(self.nets["global_prior"](az.sqrt() * z + (1 - az).sqrt() * ez, tz, cond),
                                  z, ez, az)
        with torch.no_grad():
            layout = self.layout[0](z)
        pp = self.nets["point_prior_low" if self.expert else "point_prior"]
        ht = ah.sqrt() * h + (1 - ah).sqrt() * eh
        x0_prev = None
        if pp.self_condition:
            # Self-conditioning: half the batch sees the network's own estimate (no gradient
            # through it), the other half zeros, as on a sampler's first step.
            with torch.no_grad():
                x0_prev = x0_from_output(ht, pp(ht, th, z, cond, layout), ah, self.prediction_type)
                x0_prev = x0_prev * (torch.rand(h.shape[0], 1, 1, device=h.device) < 0.5)
        loss_h = self.loss_fn(pp(ht, th, z, cond, layout, x0_prev), h, eh, ah)
        return loss_z, loss_h


class _CodeObjective(torch.nn.Module):
    """Shape-code autoencoder loss as one module (for DDP): Chamfer between the layout decoded
    from the noised code of ``h`` (B×M×3, posterior samples) and ``target`` (B×M×3)."""

    def __init__(self, nets: torch.nn.ModuleDict, noise: float) -> None:
        super().__init__()
        self.nets, self.noise = nets, noise

    def forward(self, h: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        code = self.nets["encoder"](h)
        return chamfer(self.nets["decoder"](code + self.noise * torch.randn_like(code)), target).mean()


class _DecoderObjective(torch.nn.Module):
    """Decoder-stage losses as one module (DDP syncs the decoder's gradients): Chamfer on
    ``n_rec_points`` and exact-matching EMD on ``decoder_emd_points`` decoded points, both
    against random subsets of the input, decoded from posterior samples of the frozen encoder
    (a share of them first noised and denoised by the frozen priors with ``decoder_sdedit``)."""

    def __init__(self, vae: torch.nn.Module, tcfg: "TrainConfig", model: PointsModel | None = None) -> None:
        super().__init__()
        self.vae, self.tcfg = vae, tcfg
        # A plain attribute, not a submodule: DDP must see only the decoder's parameters.
        self._sampler = None
        if model is not None and tcfg.decoder_sdedit > 0:
            from .sampler import LatentSampler
            self._sampler = LatentSampler(model)

    @torch.no_grad()
    def _through_priors(self, z: torch.Tensor, h: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior samples z B×G, h B×M×P -> the priors' SDEdit of them, in the same units."""
        t, s = self.tcfg, self._sampler
        m = s.model
        strength = 0.02 + (t.decoder_sdedit - 0.02) * float(torch.rand(()))
        h, = m.to_slot_order(h)
        zn, hn = s.denoise(s.condition(ids), steps=t.decoder_sdedit_steps, guidance=1.0,
                           z_init=m.norm_z(m.global_latent(z, h)), h_init=m.norm_h(h), strength=strength)
        return m.vae_z(m.denorm_z(zn)), m.denorm_h(hn)

    def forward(self, x: torch.Tensor, ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        t, vae = self.tcfg, self.vae
        with torch.no_grad():
            post = vae.encode(x)
            z = vae.sample_posterior(post["z_mu"], post["z_logvar"])
            h = vae.sample_posterior(post["h_mu"], post["h_logvar"])
            k = int(round(t.decoder_sdedit_frac * x.shape[0])) if self._sampler is not None and ids is not None else 0
            if k:
                zk, hk = self._through_priors(z[:k], h[:k], ids[:k])
                z, h = torch.cat([zk, z[k:]]), torch.cat([hk, h[k:]])
        perm = torch.randperm(x.shape[1], device=x.device)
        cd = chamfer(vae.decode(z, h, t.n_rec_points), x[:, perm[:t.n_rec_points]]).mean()
        emd = emd_matched(vae.decode(z, h, t.decoder_emd_points), x[:, perm[-t.decoder_emd_points:]]).mean()
        return cd, emd


class _JointObjective(torch.nn.Module):
    """Reconstruction, priors' losses on posterior samples and posterior entropy (joint stage).

    The encoder receives the priors' loss scaled by ``joint_prior_weight`` (the KL weight of
    the VAE stage's balance); the priors receive it whole.
    """

    def __init__(self, nets: torch.nn.ModuleDict, trainer: "Trainer") -> None:
        super().__init__()
        self.nets, self.trainer = nets, [trainer]          # list: not a submodule
        self.prior = _PriorObjective(nets, trainer)

    def forward(self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator):
        tr = self.trainer[0]
        t, m = tr.tcfg, tr.model
        vae = self.nets["vae"]
        post = vae.encode(x)
        z = vae.sample_posterior(post["z_mu"], post["z_logvar"])
        h = vae.sample_posterior(post["h_mu"], post["h_logvar"])
        rec = vae.decode(z, h, t.n_rec_points)
        # The decoder takes a set; the priors take the slot order (a permutation, so the
        # encoder's gradient passes through it unchanged).
        h, = m.to_slot_order(h)
        target = x[:, torch.randperm(x.shape[1], device=x.device)[:t.n_rec_points]]
        rec_loss = chamfer(rec, target).mean()
        w = t.joint_prior_weight
        zn, hn = _scale_grad(m.norm_z(m.global_latent(z, h)), w), _scale_grad(m.norm_h(h), w)
        ids = self.nets["cond"].drop(y, tr.cfg.cond.p_uncond, gen)
        T = tr.cfg.diffusion.num_train_timesteps
        tz = torch.randint(0, T, (x.shape[0],), device=x.device, generator=gen)
        th = torch.randint(0, T, (x.shape[0],), device=x.device, generator=gen)
        loss_z, loss_h = self.prior(zn, hn, ids, tz, th)
        entropy = 0.5 * (post["z_logvar"].mean() + post["h_logvar"].mean())
        return rec_loss, loss_z, loss_h, entropy


def save_train_config(path: Path, tcfg: TrainConfig) -> None:
    path.write_text(json.dumps(asdict(tcfg), indent=2) + "\n")
