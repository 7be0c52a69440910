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


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    """An untrained, tiny points checkpoint (categories chair, table): fast pipeline tests."""
    import torch

    from engine.models.points.config import tiny_config
    from engine.models.points.model import PointsModel
    path = tmp_path_factory.mktemp("points_ckpt")
    torch.manual_seed(0)
    PointsModel(tiny_config(["chair", "table"])).save(path)
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
