"""Device selection: `auto` picks CUDA when present, else CPU."""

from __future__ import annotations

from engine.errors import DeviceUnavailable


def resolve_device(name: str = "auto") -> str:
    """Return a torch device string ("cpu" or "cuda[:i]") for a user setting.

    ``name`` is ``auto``, ``cpu``, ``cuda`` or ``cuda:N``. Raises ``DeviceUnavailable``
    when CUDA is asked for and absent.
    """
    import torch

    name = (name or "auto").lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceUnavailable(f"Device {name!r} was requested but CUDA is not available here.")
        return name
    raise DeviceUnavailable(f"Unknown device {name!r}.", "Use auto, cpu, cuda or cuda:N.")
