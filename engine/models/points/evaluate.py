"""Measure a point-model checkpoint against the procedural test split.

``python -m engine.models.points.evaluate --ckpt DIR [--per-category 16] [--steps 25]``
prints JSON: per category 1-NNA-CD/EMD, COV, MMD (``engine.eval.metrics``) of
category-conditioned samples against test-split shapes, the eval classifier's accuracy on
the samples, the VAE's reconstruction Chamfer on the test shapes, and (``--floor``) the
same metrics for train-split shapes in place of samples: the best a perfect model could
score at this sample size. ``--device cuda`` samples and computes Chamfer distances on the GPU
(the random draws differ from the CPU's, so figures differ by sampling noise); ``--workers``
spreads the exact EMD over CPU processes. Samples get the checkpoint's extent calibration
when it has one (as ``generate`` does); ``--no-calibration`` measures without it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch


def reference_points(category: str, split: str, n: int, n_points: int = 2048, offset: int = 0) -> np.ndarray:
    """``n`` shapes of a procedural split, ``n_points`` surface points each (n×P×3)."""
    from engine.data import procedural

    from .data import _sample_surface
    seeds = procedural.split_seeds(split, n + offset)[offset:]
    return np.stack([_sample_surface(procedural.generate_shape(category, s).mesh, n_points, s + 7) for s in seeds])


@torch.no_grad()
def sample_category(model, category: str, n: int, steps: int, guidance: float, seed: int,
                    sampler: str = "dpmsolver++", batch: int = 16, clean: bool | None = None,
                    calibrate: bool = True) -> tuple[np.ndarray, float]:
    """``n`` conditioned samples (n×2048×3) and the seconds per shape; extent-calibrated when the
    checkpoint has a calibration and ``calibrate``."""
    from .sampler import LatentSampler
    s = LatentSampler(model)
    cid = model.cfg.cond.categories.index(category)
    out, t0 = [], time.perf_counter()
    for b0 in range(0, n, batch):
        b = min(batch, n - b0)
        g = torch.Generator(device=s.device).manual_seed(seed + b0)
        cond = s.condition(torch.full((b,), cid, dtype=torch.long))
        out.append(s.run(cond, n_points=2048, steps=steps, guidance=guidance, sampler=sampler, generator=g,
                         clean=clean, category_ids=torch.full((b,), cid) if calibrate else None).cpu().numpy())
    return np.concatenate(out), (time.perf_counter() - t0) / n


@torch.no_grad()
def reconstruction_chamfer(model, pts: np.ndarray) -> float:
    """Mean Chamfer (squared distances, as in training) of posterior-mean reconstructions."""
    from .losses import chamfer
    dev = next(model.parameters()).device
    x = torch.from_numpy(pts).float().to(dev)
    g = torch.Generator(device=dev).manual_seed(0)
    vals = []
    for i in range(0, len(x), 16):
        post = model.vae.encode(x[i:i + 16], g)
        rec = model.vae.decode(post["z_mu"], post["h_mu"], x.shape[1], g)
        vals.append(chamfer(rec, x[i:i + 16]).cpu())
    return float(torch.cat(vals).mean())


def evaluate(ckpt: Path, per_category: int, steps: int, guidance: float | None, categories: list[str] | None,
             floor: bool, emd: bool, seed: int, samples_out: Path | None, log=print,
             split: str = "test", clean: bool | None = None, device: str = "cpu", workers: int = 1,
             calibrate: bool = True) -> dict:
    """Metrics of ``per_category`` samples per category against as many ``split`` shapes (see module doc)."""
    from engine.eval.metrics import compute_all_metrics

    from .model import PointsModel
    model = PointsModel.load(ckpt, device=device)
    guidance = model.cfg.diffusion.guidance if guidance is None else guidance
    cats = categories or list(model.cfg.cond.categories)
    result: dict = {"checkpoint": str(ckpt), "steps": steps, "guidance": guidance, "per_category": per_category,
                    "reference_split": split, "device": device,
                    "cleanup": model.cfg.cleanup.enabled if clean is None else clean,
                    "extent_calibration": bool(model.cfg.calibration.extents and calibrate), "categories": {}}
    all_samples, all_labels = [], []
    for c in cats:
        t0 = time.perf_counter()
        ref = reference_points(c, split, per_category)
        samples, sec = sample_category(model, c, per_category, steps, guidance, seed, clean=clean,
                                       calibrate=calibrate)
        m = compute_all_metrics(samples, ref, use_emd=emd, seed=seed, device=device, workers=workers)
        row = {"sample": m, "seconds_per_shape": sec, "recon_chamfer_test": reconstruction_chamfer(model, ref)}
        if split != "test":
            row[f"recon_chamfer_{split}"] = row.pop("recon_chamfer_test")
        if floor:
            row["floor_train_vs_test"] = compute_all_metrics(reference_points(c, "train", per_category, offset=5000),
                                                             ref, use_emd=emd, seed=seed, device=device,
                                                             workers=workers)
        result["categories"][c] = row
        all_samples.append(samples)
        all_labels += [c] * len(samples)
        if samples_out is not None:
            samples_out.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(samples_out / f"{c}.npz", points=samples.astype(np.float32))
        log(f"{c}: 1-NNA-CD {m['1nna_cd']:.3f} 1-NNA-EMD {m['1nna_emd']} COV-CD {m['cov_cd']:.3f} "
            f"({time.perf_counter() - t0:.0f} s)")
    try:
        from engine.eval.classifier import classify_points
        labels, _ = classify_points(np.concatenate(all_samples))
        acc = {c: float(np.mean([p == c for p, t in zip(labels, all_labels) if t == c])) for c in cats}
        result["classifier_accuracy"] = {"overall": float(np.mean([p == t for p, t in zip(labels, all_labels)])),
                                         "per_category": acc}
    except Exception as exc:  # the classifier is another layer's checkpoint; report, don't fail
        result["classifier_accuracy"] = {"error": f"{type(exc).__name__}: {exc}"}
    keys = ("1nna_cd", "1nna_emd", "cov_cd", "cov_emd", "mmd_cd", "mmd_emd")
    result["mean"] = {k: float(np.mean([r["sample"][k] for r in result["categories"].values()
                                        if r["sample"][k] is not None] or [np.nan])) for k in keys}
    key = f"recon_chamfer_{split}"
    result["mean"][key] = float(np.mean([r[key] for r in result["categories"].values()]))
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True, type=Path)
    p.add_argument("--per-category", type=int, default=16)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--guidance", type=float, help="default: the checkpoint's diffusion.guidance")
    p.add_argument("--categories")
    p.add_argument("--floor", action="store_true")
    p.add_argument("--no-emd", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", choices=("test", "val"), default="test",
                   help="reference shapes: the test split (reported figures) or val (choosing settings)")
    p.add_argument("--cleanup", choices=("config", "on", "off"), default="config",
                   help="stray-point removal after decoding: as the checkpoint's config says, or forced")
    p.add_argument("--no-calibration", action="store_true",
                   help="sample without the checkpoint's extent calibration (calibration.extents)")
    p.add_argument("--samples-out", type=Path)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", help="where to sample and compute Chamfer distances (cpu, cuda)")
    p.add_argument("--workers", type=int, default=1, help="CPU processes for the exact EMD")
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    res = evaluate(a.ckpt, a.per_category, a.steps, a.guidance, a.categories.split(",") if a.categories else None,
                   a.floor, not a.no_emd, a.seed, a.samples_out, log=lambda s: print(s, file=sys.stderr, flush=True),
                   split=a.split, clean=None if a.cleanup == "config" else a.cleanup == "on",
                   device=a.device, workers=a.workers, calibrate=not a.no_calibration)
    text = json.dumps(res, indent=2)
    if a.out:
        a.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
