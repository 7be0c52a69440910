"""Checkpoint folder layout of the point model, without torch: the engine lists models
(and says why one is unavailable) before any model code is imported."""

from __future__ import annotations

import json
from pathlib import Path

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
CALIBRATION = "calibration.safetensors"   # only when config.json turns calibration.extents on


def checkpoint_complete(folder: str | Path, calibration: bool = True) -> tuple[bool, str]:
    """Cheap check (no weights read) that a checkpoint folder is usable, with a reason if not.
    ``calibration`` False skips the calibration file (for the stage that is about to fit it)."""
    folder = Path(folder)
    if not folder.is_dir():
        return False, f"checkpoint folder {folder} does not exist"
    for name in (CONFIG, WEIGHTS):
        if not (folder / name).is_file():
            return False, f"{name} missing in {folder}; train with `latentforge train points`"
    try:
        calibrated = bool(json.loads((folder / CONFIG).read_text()).get("calibration", {}).get("extents"))
    except (OSError, ValueError, AttributeError):
        return False, f"{folder / CONFIG} is not a readable JSON config; train with `latentforge train points`"
    if calibration and calibrated and not (folder / CALIBRATION).is_file():
        return False, (f"{CALIBRATION} missing in {folder} while config.json turns on calibration.extents; "
                       "fit it with `latentforge train points --stage calibrate`")
    return True, ""
