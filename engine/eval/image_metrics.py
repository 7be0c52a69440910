"""Image metrics for novel views: PSNR and SSIM (scikit-image implementations).

Images are H×W×C (or a batch B×H×W×C, or grey H×W); uint8 images are compared on the
0-255 scale, float images on [0, 1] (``data_range`` 1). SSIM is scikit-image's
``structural_similarity`` with a Gaussian window (σ 1.5, as Wang et al. 2004 and as
Zero-1-to-3's evaluation), computed per channel and averaged.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from engine.eval.errors import BadPointSet, NoShapes, UnreadableShapeFile

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class ImageMismatch(BadPointSet):
    """Two images (or batches) that should be compared do not have the same shape."""

    code = "eval.image_mismatch"
    advice = "Compare images of the same size and channel count (render both at one resolution)."


def _prepare(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ImageMismatch(f"Image shapes differ: {pred.shape} vs {target.shape}.")
    if pred.ndim not in (2, 3, 4) or pred.size == 0:
        raise ImageMismatch(f"Expected H×W, H×W×C or B×H×W×C images, got shape {pred.shape}.")
    if pred.dtype == np.uint8 and target.dtype == np.uint8:
        return pred.astype(np.float64), target.astype(np.float64), 255.0
    p, t = pred.astype(np.float64), target.astype(np.float64)
    if not (np.isfinite(p).all() and np.isfinite(t).all()):
        raise ImageMismatch("Images contain NaN or infinite values.")
    return p, t, 1.0


def _batched(pred: np.ndarray, target: np.ndarray) -> bool:
    return pred.ndim == 4


def psnr(pred: np.ndarray, target: np.ndarray) -> float | np.ndarray:
    """PSNR in dB of pred against target (inf for identical images).

    Single image -> float; batch B×H×W×C -> float64 array (B,).
    """
    p, t, rng = _prepare(pred, target)
    if _batched(p, t):
        return np.array([psnr_one(a, b, rng) for a, b in zip(p, t)])
    return psnr_one(p, t, rng)


def psnr_one(p: np.ndarray, t: np.ndarray, data_range: float) -> float:
    """PSNR in dB of one pair of float images with the given data range."""
    if np.array_equal(p, t):
        return float("inf")
    return float(peak_signal_noise_ratio(t, p, data_range=data_range))


def ssim(pred: np.ndarray, target: np.ndarray) -> float | np.ndarray:
    """SSIM in [-1, 1] (1 = identical). Single image -> float; batch -> array (B,).

    Images must be at least 7×7 (the Gaussian window's support).
    """
    p, t, rng = _prepare(pred, target)
    if min(p.shape[-3:-1] if p.ndim >= 3 else p.shape) < 7:
        raise ImageMismatch(f"SSIM needs images of at least 7×7 pixels, got {p.shape}.")
    if _batched(p, t):
        return np.array([_ssim_one(a, b, rng) for a, b in zip(p, t)])
    return _ssim_one(p, t, rng)


def _ssim_one(p: np.ndarray, t: np.ndarray, data_range: float) -> float:
    channel_axis = -1 if p.ndim == 3 else None
    return float(structural_similarity(t, p, data_range=data_range, channel_axis=channel_axis,
                                       gaussian_weights=True, sigma=1.5, use_sample_covariance=False))


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as exc:
        raise UnreadableShapeFile(f"{path}: cannot read image ({exc}).",
                                  "Use PNG or JPEG images.") from exc


def evaluate_image_folders(pred_dir: str | os.PathLike, target_dir: str | os.PathLike) -> dict:
    """Mean PSNR/SSIM over images with the same relative path in both folders (RGB, 0-255).

    Returns {"psnr", "ssim", "n_images", "per_image": {name: {psnr, ssim}}, "skipped": {...}}.
    PSNR of identical pairs (infinite) is excluded from the mean and reported as null with
    ``identical: true``; ``psnr`` is null when every pair is identical.
    """
    pred_root, target_root = Path(pred_dir), Path(target_dir)
    names = sorted(p.relative_to(pred_root).as_posix() for p in pred_root.rglob("*")
                   if p.suffix.lower() in IMAGE_SUFFIXES) if pred_root.is_dir() else []
    per_image, skipped = {}, {}
    for name in names:
        tpath = target_root / name
        if not tpath.is_file():
            skipped[name] = {"code": "eval.image_missing", "message": f"no {tpath}"}
            continue
        try:
            a, b = _read_image(pred_root / name), _read_image(tpath)
            value = psnr(a, b)
            # JSON has no infinity: identical pairs report psnr null and identical true.
            per_image[name] = {"psnr": value if np.isfinite(value) else None, "ssim": ssim(a, b),
                               "identical": not np.isfinite(value)}
        except (UnreadableShapeFile, ImageMismatch) as exc:
            skipped[name] = {"code": exc.code, "message": exc.message}
    if not per_image:
        raise NoShapes(f"No image pairs with matching names in {pred_root} and {target_root}.",
                       "Put images with the same file names in both folders (png/jpg).")
    finite = [v["psnr"] for v in per_image.values() if v["psnr"] is not None]
    return {"psnr": float(np.mean(finite)) if finite else None,
            "ssim": float(np.mean([v["ssim"] for v in per_image.values()])),
            "n_images": len(per_image), "per_image": per_image, "skipped": skipped}
