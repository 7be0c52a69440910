"""Checks and helpers the job operators share (connection, model choice, seeds, input images)."""

import os
import random

import bpy
import numpy as np

from .. import scene_builders as sb
from ..engine_bridge import BRIDGE

MAX_SEED = 2**31 - 1 - 64 * 256  # leaves room for the per-object seed offsets the engine adds
_DOING = {"generate": "generate", "refine": "refine objects", "views": "make novel views",
          "populate": "populate", "interpolate": "interpolate shapes"}


def poll_connected(cls, task: str | None = None) -> bool:
    """Operator poll: connected, and (if ``task``) some model can do it; says why not."""
    if not BRIDGE.connected:
        cls.poll_message_set("Not connected: start or connect the engine in the add-on preferences")
        return False
    if task:
        reason = BRIDGE.task_unavailable_reason(task)
        if reason:
            cls.poll_message_set(f"Unavailable: {reason}")
    return True


def check_ready(op: bpy.types.Operator, task: str, model: str) -> str | None:
    """The model to use for ``task``, or None after reporting why nothing can be sent."""
    if not BRIDGE.connected:
        op.report({"ERROR"}, "Not connected to an engine: start or connect it in the add-on preferences.")
        return None
    names = [m["name"] for m in BRIDGE.model_entries(task)]
    if model in names:
        return model
    if model and model != "NONE":
        entry = next((m for m in BRIDGE.models if m.get("name") == model), None)
        if entry is not None:
            info = (entry.get("tasks") or {}).get(task) or {}
            why = info.get("reason") or entry.get("reason") or "not available"
            op.report({"ERROR"}, f"The {model} model cannot {_DOING.get(task, task)}: {why}")
            return None
    if names:
        return names[0]
    op.report({"ERROR"}, f"No installed model can {_DOING.get(task, task)}: {BRIDGE.task_unavailable_reason(task)}")
    return None


def next_seed(settings) -> int:
    """The seed to use; a fresh one (written back so the user sees it) when randomizing."""
    if settings.randomize_seed:
        settings.seed = random.randint(0, MAX_SEED)
    return int(settings.seed)


def load_image_array(path: str) -> np.ndarray:
    """u8 H×W×4 pixels of an image file, read by Blender (any format it can open)."""
    path = bpy.path.abspath(path) if path else ""
    if not path or not os.path.isfile(path):
        raise sb.BadArrays(f"Image file not found: {path or '(none)'}.", "Pick an existing image file.")
    existing = {img.name for img in bpy.data.images}
    image = bpy.data.images.load(path, check_existing=True)
    try:
        return sb.image_pixels(image)
    finally:
        if image.name not in existing and image.users == 0:
            bpy.data.images.remove(image)


def report_bad_input(op: bpy.types.Operator, exc: sb.BadArrays) -> set[str]:
    op.report({"ERROR"}, f"{exc.message} {exc.advice}".strip())
    BRIDGE.report("ERROR", exc.message, exc.advice, exc.code)
    return {"CANCELLED"}
