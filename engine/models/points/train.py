"""Training stages of the point model, LSGM-style:

1. ``vae``:   the hierarchical VAE with Chamfer reconstruction + small KL;
2. ``prior``: the dataset is encoded once (posterior means/log-variances of a few random
   point subsets per shape); the global prior and the point prior (conditioned on the
   clean global latent) are trained on posterior samples with the DDPM epsilon loss,
   condition dropout for classifier-free guidance, and an EMA of their weights.

Both stages are resumable (``<state>/``: weights, optimizer, step, RNG) and checkpoint
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
from .losses import chamfer, gaussian_kl
from .model import PointsModel
from .sampler import train_scheduler


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
    encode_repeats: int = 2           # random point subsets encoded per training shape
    ema: float = 0.999
    # bookkeeping
    ckpt_every_s: float = 120.0
    val_shapes: int = 64

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (d or {}).items() if k in names})


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


def _ddp_wrap(module: torch.nn.Module) -> torch.nn.Module:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch.distributed as dist
        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        dev = [int(os.environ.get("LOCAL_RANK", 0))] if torch.cuda.is_available() else None
        return torch.nn.parallel.DistributedDataParallel(module, device_ids=dev)
    return module


class Trainer:
    """Runs the stages for one model folder ``out`` with resumable state in ``state``."""

    def __init__(self, cfg: PointsConfig, tcfg: TrainConfig, train: PointSets, val: PointSets,
                 out: Path, state: Path, device: str = "cpu", log=print) -> None:
        self.cfg, self.tcfg, self.train, self.val = cfg, tcfg, train, val
        self.out, self.state, self.device, self.log = Path(out), Path(state), device, log
        self.state.mkdir(parents=True, exist_ok=True)
        self.model = PointsModel(cfg).to(device)
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

    def has_state(self, name: str) -> bool:
        return (self.state / f"{name}.json").is_file()

    def save_model(self) -> None:
        if _rank() == 0:
            self.model.save(self.out)

    def load_model_if_any(self, vae_only: bool = False) -> bool:
        """Load the model folder's weights (only the VAE's with ``vae_only``, so the priors
        may have another config than the one the VAE was trained with)."""
        path = self.out / "model.safetensors"
        if not path.is_file():
            return False
        state = load_file(str(path), device=self.device)
        if vae_only:
            self.model.vae.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("vae.")})
        else:
            self.model.load_state_dict(state)
        return True

    # ---------------------------------------------------------------- VAE
    @torch.no_grad()
    def val_reconstruction(self, n: int | None = None) -> float:
        """Mean Chamfer (squared distances, 2048 vs 2048) of posterior-mean reconstructions on val."""
        vae = self.model.vae.eval()
        n = min(n or self.tcfg.val_shapes, len(self.val))
        idx = np.linspace(0, len(self.val) - 1, n).astype(int)
        g = torch.Generator(device=self.device).manual_seed(0)
        total = 0.0
        for s in range(0, n, 16):
            x, _ = self.val.batch(idx[s:s + 16], self.cfg.n_points, np.random.default_rng(s))
            x = x.to(self.device)
            post = vae.encode(x, g)
            rec = vae.decode(post["z_mu"], post["h_mu"], self.cfg.n_points, g)
            total += chamfer(rec, x).sum().item()
        vae.train()
        return total / n

    def train_vae(self, resume: bool = False) -> None:
        t, vae = self.tcfg, self.model.vae
        opt = torch.optim.AdamW(vae.parameters(), lr=t.vae_lr, weight_decay=1e-4)
        step, elapsed = 0, 0.0
        if resume and self.has_state("vae"):
            tensors, step, meta = self._load_state("vae", opt)
            vae.load_state_dict(tensors)
            elapsed = float(meta.get("elapsed", 0.0))
            self.log(f"resumed VAE at step {step}")
        ddp = _ddp_wrap(vae)
        vae.train()
        # t0 counts the wall time of earlier runs too, so budgets and the schedule survive resumes.
        t0, last_ckpt = time.time() - elapsed, time.time()
        bar = tqdm(total=t.vae_iters, initial=step, desc="vae", disable=_rank() != 0, mininterval=10)
        while not _agree_to_stop(step >= t.vae_iters or (time.time() - t0) / 60 >= t.vae_minutes, self.device):
            # Cosine decay over whichever budget (steps or minutes) runs out first.
            frac = min(1.0, max(step / t.vae_iters, (time.time() - t0) / 60 / t.vae_minutes))
            lr = float(t.vae_lr * min(1.0, (step + 1) / t.lr_warmup) * (0.5 * (1 + np.cos(np.pi * frac)) * 0.9 + 0.1))
            for gparam in opt.param_groups:
                gparam["lr"] = lr
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
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
            opt.step()
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
        path = self.state / f"latents_vae{vae_step}.safetensors"
        if path.is_file():
            return load_file(str(path))
        lat = self.encode_dataset(self.train, self.tcfg.encode_repeats)
        if _rank() == 0:
            save_file(lat, str(path))
        return lat

    def _set_stats(self, lat: dict[str, torch.Tensor]) -> None:
        g = torch.Generator().manual_seed(0)
        z = lat["z_mu"] + lat["z_logvar"].mul(0.5).exp() * torch.randn(lat["z_mu"].shape, generator=g)
        h = lat["h_mu"] + lat["h_logvar"].mul(0.5).exp() * torch.randn(lat["h_mu"].shape, generator=g)
        m = self.model
        m.z_mean.copy_(z.mean(0).to(m.z_mean))
        m.z_std.copy_(z.std(0).clamp(min=1e-3).to(m.z_std))
        hf = h.reshape(-1, h.shape[-1])
        m.h_mean.copy_(hf.mean(0).to(m.h_mean))
        m.h_std.copy_(hf.std(0).clamp(min=1e-3).to(m.h_std))

    def train_prior(self, resume: bool = False) -> None:
        t, m, dev = self.tcfg, self.model, self.device
        lat = self._latents()
        self._set_stats(lat)
        lat = {k: v.to(dev) for k, v in lat.items()}
        params = list(m.global_prior.parameters()) + list(m.point_prior.parameters()) + list(m.cond.parameters())
        opt = torch.optim.AdamW(params, lr=t.prior_lr, weight_decay=0.0)
        trainable = torch.nn.ModuleDict({"global_prior": m.global_prior, "point_prior": m.point_prior, "cond": m.cond})
        ema = copy.deepcopy(trainable).requires_grad_(False)
        step, elapsed = 0, 0.0
        if resume and self.has_state("prior"):
            tensors, step, meta = self._load_state("prior", opt)
            elapsed = float(meta.get("elapsed", 0.0))
            trainable.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
            ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
            self.log(f"resumed priors at step {step}")
        ddp = _ddp_wrap(trainable)
        net = ddp.module if hasattr(ddp, "module") else ddp
        sched = train_scheduler(self.cfg.diffusion)
        ac = sched.alphas_cumprod.to(dev)
        T = self.cfg.diffusion.num_train_timesteps
        n = lat["z_mu"].shape[0]
        t0, last_ckpt = time.time() - elapsed, time.time()
        bar = tqdm(total=t.prior_iters, initial=step, desc="priors", disable=_rank() != 0, mininterval=10)
        gen = torch.Generator(device=dev).manual_seed(t.seed + 17 + step + 1000003 * _rank())
        while not _agree_to_stop(step >= t.prior_iters or (time.time() - t0) / 60 >= t.prior_minutes, dev):
            lr = float(t.prior_lr * min(1.0, (step + 1) / 500))
            for gparam in opt.param_groups:
                gparam["lr"] = lr
            idx = torch.randint(0, n, (t.prior_batch,), device=dev, generator=gen)
            z = m.norm_z(lat["z_mu"][idx] + lat["z_logvar"][idx].mul(0.5).exp() * torch.randn_like(lat["z_mu"][idx]))
            h = m.norm_h(lat["h_mu"][idx] + lat["h_logvar"][idx].mul(0.5).exp() * torch.randn_like(lat["h_mu"][idx]))
            ids = net["cond"].drop(lat["labels"][idx], self.cfg.cond.p_uncond, gen)
            cond = net["cond"](ids)
            tz = torch.randint(0, T, (z.shape[0],), device=dev, generator=gen)
            th = torch.randint(0, T, (z.shape[0],), device=dev, generator=gen)
            ez, eh = torch.randn_like(z), torch.randn_like(h)
            az, ah = ac[tz].unsqueeze(-1), ac[th].view(-1, 1, 1)
            zt = az.sqrt() * z + (1 - az).sqrt() * ez
            ht = ah.sqrt() * h + (1 - ah).sqrt() * eh
            loss_z = ((net["global_prior"](zt, tz, cond) - ez) ** 2).mean()
            loss_h = ((net["point_prior"](ht, th, z, cond) - eh) ** 2).mean()
            loss = loss_z + loss_h
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            step += 1
            decay = min(t.ema, (1 + step) / (10 + step))
            with torch.no_grad():
                for pe, pn in zip(ema.parameters(), net.parameters()):
                    pe.lerp_(pn, 1 - decay)
            bar.update(1)
            if step % 50 == 0:
                bar.set_postfix(lz=f"{loss_z.item():.4f}", lh=f"{loss_h.item():.4f}")
                self._logline({"stage": "prior", "step": step, "loss_z": loss_z.item(), "loss_h": loss_h.item(),
                               "t": time.time() - t0})
            if time.time() - last_ckpt > t.ckpt_every_s:
                self._prior_checkpoint(net, ema, opt, step, elapsed=time.time() - t0)
                last_ckpt = time.time()
        bar.close()
        self._prior_checkpoint(net, ema, opt, step, done=True, elapsed=time.time() - t0)

    def _prior_checkpoint(self, net, ema, opt, step: int, done: bool = False, elapsed: float = 0.0) -> None:
        tensors = {f"net.{k}": v for k, v in net.state_dict().items()}
        tensors.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
        self._save_state("prior", tensors, opt, step, {"done": done, "elapsed": elapsed})
        self._logline({"stage": "prior", "step": step, "checkpoint": True, "t": elapsed})
        # The shipped model carries the EMA weights of the priors.
        live = {k: v.clone() for k, v in net.state_dict().items()}
        net.load_state_dict(ema.state_dict())
        self.save_model()
        net.load_state_dict(live)
        self.log(f"priors step {step}: checkpoint written")


def save_train_config(path: Path, tcfg: TrainConfig) -> None:
    path.write_text(json.dumps(asdict(tcfg), indent=2) + "\n")
