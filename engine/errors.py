"""Typed, user-facing errors with stable codes.

Standard library only: the add-on ships this module unchanged (next to the protocol and
client) so both sides raise and read the same errors.

Every error a user can hit carries
- ``code``: a stable dotted string (``area.reason``) that clients may switch on,
- ``message``: what was wrong, in one sentence,
- ``advice``: what to do about it.

Areas define their own subclasses next to the code that raises them; each subclass sets
a class-level ``code`` default. ``docs/errors.md`` lists every code.
"""

from __future__ import annotations

from typing import Any


class LatentforgeError(Exception):
    """Base class of every error the engine reports to a user."""

    code: str = "internal"
    advice: str = ""

    def __init__(self, message: str, advice: str | None = None, *, code: str | None = None,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if advice is not None:
            self.advice = advice
        if code is not None:
            self.code = code
        self.details = dict(details or {})

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}" + (f" {self.advice}" if self.advice else "")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form used in protocol ``error`` events."""
        return {"code": self.code, "message": self.message, "advice": self.advice,
                "details": self.details}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LatentforgeError":
        return cls(str(d.get("message", "")), str(d.get("advice", "")),
                   code=str(d.get("code", "internal")), details=d.get("details") or {})


class InvalidRequest(LatentforgeError):
    """A job spec or request field is missing, of the wrong type or out of range."""

    code = "request.invalid"
    advice = "Check the request fields against docs/protocol.md."


class ModelUnavailable(LatentforgeError):
    """The requested model or task is not installed or not supported by that model."""

    code = "model.unavailable"
    advice = "Run `latentforge models` to see what is installed and which tasks each model supports."


class InvalidMesh(LatentforgeError):
    """An input mesh cannot be used (empty, NaN coordinates, no faces, too large...)."""

    code = "mesh.invalid"
    advice = "Check the mesh in Blender (Mesh > Clean Up) or pick another object."


class EmptyMesh(InvalidMesh):
    """A mesh or point set has nothing to work with: no vertices, no faces, or zero area.

    One code for every layer (loading, geometry, evaluation, refine input); layers
    subclass it only to give advice that fits their context.
    """

    code = "mesh.empty"
    advice = "Pick an object or file that has faces with some area (not only points or lines)."


class NonFiniteMesh(InvalidMesh):
    """Coordinates (or values computed from them) contain NaN or infinity."""

    code = "mesh.non_finite"
    advice = "Fix the mesh (Blender: Mesh > Clean Up) or re-export it; coordinates must be finite numbers."


class JobCancelled(LatentforgeError):
    """Raised inside a pipeline when its job was cancelled; not an error for the user."""

    code = "job.cancelled"
    advice = ""


class DeviceUnavailable(LatentforgeError):
    """A device was asked for that this machine does not have."""

    code = "device.unavailable"
    advice = "Use --device auto or --device cpu."
