"""Shared fixtures. Every test runs on CPU; nothing touches the network or the user's home."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MESHES = REPO / "tests" / "data" / "meshes"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def meshes_dir() -> Path:
    """Real, imperfect meshes (open, soups, multi-body, scenes); see tests/data/meshes/README.md."""
    return MESHES


@pytest.fixture(scope="session", params=["vae_global_latent", "shape_code"])
def tiny_ckpt(tmp_path_factory, request) -> Path:
    """An untrained, tiny points checkpoint (categories chair, table): fast pipeline tests.
    Twice: with the VAE's global latent as the priors' global latent, and with a shape code."""
    import torch

    from engine.models.points.config import tiny_config
    from engine.models.points.model import PointsModel
    path = tmp_path_factory.mktemp("points_ckpt")
    torch.manual_seed(0)
    cfg = tiny_config(["chair", "table"])
    if request.param == "shape_code":
        cfg.global_prior.shape_code, cfg.global_prior.layout_width = 6, 32
        cfg.point_prior.layout_attention = True
    PointsModel(cfg).save(path)
    return path


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    if cuda_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; none on this machine")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
