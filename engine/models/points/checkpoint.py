"""Checkpoint folder layout of the point model, without torch: the engine lists models
(and says why one is unavailable) before any model code is imported."""

from __future__ import annotations

from pathlib import Path

WEIGHTS = "model.safetensors"
CONFIG = "config.json"


def checkpoint_complete(folder: str | Path) -> tuple[bool, str]:
    """Cheap check (no weights read) that a checkpoint folder is usable, with a reason if not."""
    folder = Path(folder)
    if not folder.is_dir():
        return False, f"checkpoint folder {folder} does not exist"
    for name in (CONFIG, WEIGHTS):
        if not (folder / name).is_file():
            return False, f"{name} missing in {folder}; train with `latentforge train points`"
    return True, ""
