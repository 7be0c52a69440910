"""Device selection: `auto` picks CUDA when present, else CPU."""

from __future__ import annotations

import os
import sys

from engine.errors import DeviceUnavailable

# The NVIDIA kernel driver publishes this file on Linux; without it CUDA cannot work, so
# there is no need to import torch (seconds) to find that out.
_NVIDIA_DRIVER = "/proc/driver/nvidia/version"


def _no_cuda_driver() -> bool:
    """True when this machine certainly has no usable CUDA driver (macOS; Linux without the
    NVIDIA driver). False means "maybe": ask torch."""
    if sys.platform == "darwin":
        return True
    return sys.platform.startswith("linux") and not os.path.exists(_NVIDIA_DRIVER)


def resolve_device(name: str = "auto") -> str:
    """Return a torch device string ("cpu" or "cuda[:i]") for a user setting.

    ``name`` is ``auto``, ``cpu``, ``cuda`` or ``cuda:N``. Raises ``DeviceUnavailable``
    when CUDA is asked for and absent. ``cpu``, an unknown name, and any name on a machine
    without the NVIDIA driver are answered without importing torch, which takes seconds:
    the engine resolves its device at start-up.
    """
    name = (name or "auto").lower()
    if name == "cpu":
        return "cpu"
    if name != "auto" and not name.startswith("cuda"):
        raise DeviceUnavailable(f"Unknown device {name!r}.", "Use auto, cpu, cuda or cuda:N.")

    if _no_cuda_driver():
        if name == "auto":
            return "cpu"
        raise DeviceUnavailable(f"Device {name!r} was requested but this machine has no NVIDIA driver.",
                                "Install the NVIDIA driver and a CUDA build of torch, or use --device cpu.")

    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise DeviceUnavailable(f"Device {name!r} was requested but CUDA is not available here.")
    return name
