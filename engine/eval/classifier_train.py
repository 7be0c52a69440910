"""Training of the PointNet shape classifier: data loading, the resumable loop, the report.

Data: either a folder with ``train/`` and ``test/`` subfolders in any layout the eval
readers understand (the dataset cache of ``latentforge dataset build`` or exported mesh
files, category = folder name), or points drawn directly from the procedural generator's
own train/test seed splits (cached in the output folder so a resumed run reuses them).
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from engine.eval.classifier import build_model, make_config, save_classifier
from engine.eval.errors import TrainingDataMissing
from engine.eval.metrics import normalize_points
from engine.eval.readers import read_point_folder

STATE_NAME = "train_state.pt"
PROCEDURAL_CACHE = "procedural_points.npz"


@dataclass
class LabeledPoints:
    """Point clouds (S×N×3 float32) with integer labels (S,) into ``categories``."""

    points: np.ndarray
    labels: np.ndarray
    categories: list[str]


def _label(points: np.ndarray, cats: list[str | None], categories: list[str], where: str) -> LabeledPoints:
    keep = [i for i, c in enumerate(cats) if c in categories]
    if not keep:
        raise TrainingDataMissing(f"{where}: no shapes in category subfolders.")
    return LabeledPoints(points[keep], np.array([categories.index(cats[i]) for i in keep]), categories)


def load_folder_splits(data: str | os.PathLike, n_points: int = 2048, progress: bool = True
                       ) -> tuple[LabeledPoints, LabeledPoints]:
    """Train and test sets from ``DATA/train`` and ``DATA/test`` (category = first subfolder)."""
    root = Path(data)
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise TrainingDataMissing(f"{root / split} does not exist.")
    train = read_point_folder(root / "train", n_points, progress=progress)
    test = read_point_folder(root / "test", n_points, progress=progress)
    categories = sorted({c for c in train.categories if c is not None})
    return (_label(train.points, train.categories, categories, str(root / "train")),
            _label(test.points, test.categories, categories, str(root / "test")))


def generate_procedural_splits(per_category_train: int, per_category_test: int, cache_dir: str | os.PathLike,
                               n_points: int = 2048, categories: list[str] | None = None,
                               progress: bool = True) -> tuple[LabeledPoints, LabeledPoints]:
    """Surface points of procedural shapes from the generator's train and test seed ranges.

    Points are cached in ``cache_dir/procedural_points.npz`` and reused when the request
    (categories, counts, n_points) is the same.
    """
    from engine.data.procedural import CATEGORIES, generate_shape, split_seeds
    from engine.geometry.sampling import sample_surface

    cats = sorted(categories or CATEGORIES)
    request = {"categories": cats, "train": per_category_train, "test": per_category_test,
               "n_points": n_points}
    cache = Path(cache_dir) / PROCEDURAL_CACHE
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as d:
            if json.loads(str(d["request"])) == request:
                return (LabeledPoints(d["train_points"], d["train_labels"], cats),
                        LabeledPoints(d["test_points"], d["test_labels"], cats))
    jobs = [(split, ci, c, seed) for split, count in (("train", per_category_train), ("test", per_category_test))
            for ci, c in enumerate(cats) for seed in split_seeds(split, count)]
    if progress:
        from tqdm import tqdm
        jobs = tqdm(jobs, desc="procedural shapes", unit="shape")
    out: dict[str, tuple[list, list]] = {"train": ([], []), "test": ([], [])}
    for split, ci, c, seed in jobs:
        shape = generate_shape(c, seed)
        # Sampling seed differs per shape so clouds are not all drawn with one pattern.
        pts, _ = sample_surface(shape.mesh.vertices, shape.mesh.faces, n_points, seed=seed)
        out[split][0].append(pts.astype(np.float32))
        out[split][1].append(ci)
    arrays = {f"{s}_{k}": np.asarray(v) for s, (p, l) in out.items() for k, v in (("points", p), ("labels", l))}
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, request=json.dumps(request), **arrays)
    return (LabeledPoints(arrays["train_points"], arrays["train_labels"], cats),
            LabeledPoints(arrays["test_points"], arrays["test_labels"], cats))


def _augment(points: torch.Tensor, n: int, g: torch.Generator) -> torch.Tensor:
    """Random n-point subset, per-axis scale in [0.85, 1.15], Gaussian jitter (σ 0.01)."""
    b, count, _ = points.shape
    idx = torch.stack([torch.randperm(count, generator=g)[:n] for _ in range(b)])
    pts = torch.gather(points, 1, idx.unsqueeze(-1).expand(-1, -1, 3))
    scale = 0.85 + 0.3 * torch.rand(b, 1, 3, generator=g)
    jitter = (0.01 * torch.randn(pts.shape, generator=g)).clamp_(-0.03, 0.03)
    # Re-normalize so train inputs follow the same box normalization as inference.
    return normalize_points(pts * scale + jitter, "box")


@torch.no_grad()
def evaluate(model: nn.Module, data: LabeledPoints, batch_size: int = 128) -> dict[str, Any]:
    """Accuracy (fraction), per-class accuracy and confusion matrix of ``model`` on ``data``."""
    model.eval()
    pts = normalize_points(data.points, "box")
    preds = torch.cat([model(pts[i:i + batch_size]).argmax(1) for i in range(0, len(pts), batch_size)]).numpy()
    labels = data.labels
    c = len(data.categories)
    confusion = np.zeros((c, c), dtype=np.int64)
    np.add.at(confusion, (labels, preds), 1)
    per_class = {cat: (float(confusion[k, k] / confusion[k].sum()) if confusion[k].sum() else None)
                 for k, cat in enumerate(data.categories)}
    return {"accuracy": float((preds == labels).mean()), "per_class": per_class,
            "confusion": confusion.tolist(), "n_test": int(len(labels))}


def train_classifier(train: LabeledPoints, test: LabeledPoints, out_dir: str | os.PathLike, *,
                     epochs: int = 30, batch_size: int = 32, lr: float = 1e-3, n_points: int = 512,
                     seed: int = 0, progress: bool = True, data_note: str = "",
                     command: str = "") -> dict[str, Any]:
    """Train, checkpoint every epoch to ``out_dir/train_state.pt`` (resumed when present),
    then evaluate on ``test`` and write config.json + model.safetensors + MODEL.md; the
    resume state and the procedural points cache are removed after a finished run.

    Returns the final report (test accuracy as a fraction, per-class accuracy, wall time).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = make_config(train.categories, n_points=n_points)
    torch.manual_seed(seed)
    model = build_model(config)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    g = torch.Generator().manual_seed(seed)
    start_epoch, wall, history = 0, 0.0, []

    state_path = out / STATE_NAME
    if state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if state.get("categories") == train.categories and state.get("epochs") == epochs:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            sched.load_state_dict(state["sched"])
            g.set_state(state["rng"])
            start_epoch, wall, history = state["epoch"], state["wall"], state["history"]

    pts = torch.from_numpy(np.ascontiguousarray(train.points, dtype=np.float32))
    labels = torch.from_numpy(train.labels.astype(np.int64))
    steps_per_epoch = math.ceil(len(pts) / batch_size)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=epochs * steps_per_epoch, initial=start_epoch * steps_per_epoch,
                   desc="train classifier", unit="step")
    try:
        for epoch in range(start_epoch, epochs):
            t0 = time.perf_counter()
            model.train()
            order = torch.randperm(len(pts), generator=g)
            total_loss = 0.0
            for k in range(steps_per_epoch):
                idx = order[k * batch_size:(k + 1) * batch_size]
                if len(idx) < 2:  # batch norm needs two samples
                    continue
                logits = model(_augment(pts[idx], n_points, g))
                loss = loss_fn(logits, labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total_loss += loss.item() * len(idx)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
            sched.step()
            wall += time.perf_counter() - t0
            history.append({"epoch": epoch + 1, "loss": total_loss / len(pts)})
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                        "rng": g.get_state(), "epoch": epoch + 1, "epochs": epochs, "wall": wall,
                        "history": history, "categories": train.categories}, state_path)
    finally:
        if bar is not None:
            bar.close()

    report = evaluate(model, test)
    report.update({"epochs": epochs, "steps": epochs * steps_per_epoch, "batch_size": batch_size,
                   "train_shapes": int(len(pts)), "train_wall_s": round(wall, 1),
                   "machine": f"{os.cpu_count()}-core CPU ({platform.machine()})",
                   "final_loss": history[-1]["loss"] if history else None})
    config["evaluation"] = {k: report[k] for k in ("accuracy", "per_class", "n_test")}
    config["training"] = {k: report[k] for k in ("epochs", "steps", "batch_size", "train_shapes",
                                                  "train_wall_s", "machine")}
    config["training"].update({"data": data_note, "command": command, "lr": lr, "seed": seed})
    model.eval()
    save_classifier(model, config, out)
    (out / "MODEL.md").write_text(model_card(config, report))
    # Only an interrupted run needs the resume state and the generated-points cache.
    state_path.unlink(missing_ok=True)
    (out / PROCEDURAL_CACHE).unlink(missing_ok=True)
    return report


def model_card(config: dict[str, Any], report: dict[str, Any]) -> str:
    """MODEL.md text from the config and the measured report."""
    t = config["training"]
    rows = "\n".join(f"| {c} | {a * 100:.1f}% |" if a is not None else f"| {c} | - |"
                     for c, a in report["per_class"].items())
    cats = config["categories"]
    conf = "\n".join("| " + c + " | " + " | ".join(str(v) for v in row) + " |"
                     for c, row in zip(cats, report["confusion"]))
    return f"""# Shape classifier (PointNet-style)

Measures the category accuracy of generated shapes (`latentforge eval classify`,
`engine.eval.classifier.classify_points`).

- Architecture: shared per-point MLP {config['widths']} (1×1 conv + batch norm + ReLU),
  global max-pool, head {config['head']} + dropout {config['dropout']}, {len(cats)} classes. No T-net
  (shapes are in the canonical frame: +Z up, -Y front).
- Input normalization: per shape, bounding-box centre to the origin, longest side 1
  (the metrics' `box` normalization); any number of points (trained on {config['n_points']}).
- Categories: {', '.join(cats)}.
- Data: {t['data']} ({t['train_shapes']} training shapes).
- Augmentation: random {config['n_points']}-point subset of 2048, per-axis scale 0.85-1.15,
  Gaussian jitter σ=0.01 (clipped 0.03). No rotation.
- Training: Adam lr {t['lr']} (cosine), weight decay 1e-4, label smoothing 0.1, batch
  {t['batch_size']}, {t['epochs']} epochs = {t['steps']} steps, seed {t['seed']}.
- Command: `{t['command']}`
- Wall time (training loop): {t['train_wall_s']} s on a {t['machine']}.

## Test accuracy (held-out procedural test split, {report['n_test']} shapes, 2048 points each)

Overall: **{report['accuracy'] * 100:.1f}%**

| category | accuracy |
| --- | ---: |
{rows}

Confusion matrix (rows: true, columns: predicted, order as above):

| true \\ pred | {' | '.join(cats)} |
| --- | {' | '.join('---:' for _ in cats)} |
{conf}

Files: `config.json` (architecture, categories, normalization, these figures),
`model.safetensors` (weights; loaded with safetensors only).
"""
