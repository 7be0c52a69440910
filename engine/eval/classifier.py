"""PointNet-style shape classifier used to measure the category accuracy of generations.

Network: a shared per-point MLP (1×1 convolutions with batch norm), a max-pool over
points, and a small MLP head; no T-net, since shapes come in the canonical frame
(+Z up, -Y front). Input clouds are normalized per shape exactly as the metrics' ``box``
normalization (bounding-box centre, longest side 1), so any scale or offset works.

The shipped checkpoint lives in ``engine/checkpoints/classifier/`` (``config.json``,
``model.safetensors``, ``MODEL.md``) and is loaded with safetensors only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from engine.eval.errors import BadPointSet, ClassifierCheckpointInvalid, ClassifierUnavailable
from engine.eval.metrics import normalize_points

DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "classifier"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class PointNetClassifier(nn.Module):
    """Shared MLP + global max-pool + MLP head.

    Input: B×N×3 float points (any N >= 1). Output: B×C logits.
    """

    def __init__(self, num_classes: int, widths: tuple[int, ...] = (64, 128, 256),
                 head: tuple[int, ...] = (128,), dropout: float = 0.3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for w in widths:
            layers += [nn.Conv1d(c_in, w, 1, bias=False), nn.BatchNorm1d(w), nn.ReLU(inplace=True)]
            c_in = w
        self.features = nn.Sequential(*layers)
        mlp: list[nn.Module] = []
        for h in head:
            mlp += [nn.Linear(c_in, h, bias=False), nn.BatchNorm1d(h), nn.ReLU(inplace=True),
                    nn.Dropout(dropout)]
            c_in = h
        mlp.append(nn.Linear(c_in, num_classes))
        self.head = nn.Sequential(*mlp)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        feats = self.features(points.transpose(1, 2))      # B×W×N
        return self.head(feats.amax(dim=2))                 # B×C


@dataclass
class ShapeClassifier:
    """A loaded classifier: network (eval mode), category names, config, device."""

    model: PointNetClassifier
    categories: list[str]
    config: dict[str, Any]
    device: torch.device

    @torch.no_grad()
    def predict(self, points: np.ndarray | torch.Tensor, batch_size: int = 64
                ) -> tuple[list[str], np.ndarray]:
        """Classify S×N×3 points (or one N×3 cloud). Returns (labels, probs float32 S×C)."""
        pts = normalize_points(points, self.config.get("normalization", "box"))
        probs = []
        for i in range(0, len(pts), batch_size):
            logits = self.model(pts[i:i + batch_size].to(self.device))
            probs.append(torch.softmax(logits.float(), dim=1).cpu())
        p = torch.cat(probs).numpy()
        return [self.categories[k] for k in p.argmax(axis=1)], p


def build_model(config: dict[str, Any]) -> PointNetClassifier:
    """The network described by a classifier config dict (see ``make_config``)."""
    return PointNetClassifier(len(config["categories"]), tuple(config["widths"]),
                              tuple(config["head"]), float(config.get("dropout", 0.3)))


def make_config(categories: list[str], widths: tuple[int, ...] = (64, 128, 256),
                head: tuple[int, ...] = (128,), dropout: float = 0.3, n_points: int = 1024,
                **extra: Any) -> dict[str, Any]:
    """A JSON-safe classifier config: architecture, category list, normalization."""
    return {"architecture": "pointnet-maxpool", "categories": list(categories),
            "widths": list(widths), "head": list(head), "dropout": dropout,
            "normalization": "box", "n_points": n_points, **extra}


def save_classifier(model: PointNetClassifier, config: dict[str, Any], out_dir: str | os.PathLike) -> None:
    """Write ``config.json`` and ``model.safetensors`` into ``out_dir``."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS_NAME), metadata={"format": "pt"})
    (out / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")


def load_classifier(path: str | os.PathLike | None = None, device: str | torch.device = "cpu"
                    ) -> ShapeClassifier:
    """Load a classifier folder (default: the shipped ``engine/checkpoints/classifier``).

    Raises ClassifierUnavailable when files are missing, ClassifierCheckpointInvalid when
    the weights do not match the config.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(path) if path is not None else DEFAULT_CHECKPOINT
    cfg_path, w_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    if not cfg_path.is_file() or not w_path.is_file():
        raise ClassifierUnavailable(f"No classifier checkpoint in {folder} (needs {CONFIG_NAME} "
                                    f"and {WEIGHTS_NAME}).")
    try:
        config = json.loads(cfg_path.read_text())
        model = build_model(config)
        state = load_file(str(w_path), device="cpu")
        model.load_state_dict(state, strict=True)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, RuntimeError, SafetensorError) as exc:
        raise ClassifierCheckpointInvalid(f"Classifier checkpoint in {folder} is invalid: {exc}") from exc
    dev = torch.device(device)
    model.to(dev).eval()
    return ShapeClassifier(model, list(config["categories"]), config, dev)


@lru_cache(maxsize=4)
def _cached(path: str | None) -> ShapeClassifier:
    return load_classifier(path)


def classify_points(points: np.ndarray | torch.Tensor, path: str | os.PathLike | None = None,
                    batch_size: int = 64) -> tuple[list[str], np.ndarray]:
    """Classify S×N×3 point clouds with the shipped (or given) checkpoint, on the CPU.

    Returns (labels: list of S category names, probs: float32 S×C in the order of the
    checkpoint's ``categories``). The loaded checkpoint is cached per path.
    """
    if isinstance(points, (np.ndarray, torch.Tensor)) and points.ndim == 2:
        points = points[None]
    if not isinstance(points, (np.ndarray, torch.Tensor)) or points.ndim != 3 or points.shape[-1] != 3:
        raise BadPointSet("classify_points expects points of shape S×N×3.")
    clf = _cached(None if path is None else str(Path(path).resolve()))
    return clf.predict(points, batch_size=batch_size)
