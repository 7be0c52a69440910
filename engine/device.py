"""Device selection: `auto` picks CUDA when present, else CPU."""

from __future__ import annotations

from engine.errors import DeviceUnavailable


def resolve_device(name: str = "auto") -> str:
    """Return a torch device string ("cpu" or "cuda[:i]") for a user setting.

    ``name`` is ``auto``, ``cpu``, ``cuda`` or ``cuda:N``. Raises ``DeviceUnavailable``
    when CUDA is asked for and absent. ``cpu`` (and an unknown name) is answered without
    importing torch, which takes seconds: the engine resolves its device at start-up.
    """
    name = (name or "auto").lower()
    if name == "cpu":
        return "cpu"
    if name != "auto" and not name.startswith("cuda"):
        raise DeviceUnavailable(f"Unknown device {name!r}.", "Use auto, cpu, cuda or cuda:N.")

    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise DeviceUnavailable(f"Device {name!r} was requested but CUDA is not available here.")
    return name
