"""Typed errors of the render layer (codes listed in docs/errors.md, "Geometry and rendering")."""

from __future__ import annotations

from engine.errors import DeviceUnavailable, InvalidRequest


class InvalidCamera(InvalidRequest):
    """A camera parameter or matrix is unusable (non-finite, zero radius, not a rotation...)."""

    code = "render.invalid_camera"
    advice = ("Use finite angles, a positive radius, a field of view in (0, 180) degrees and "
              "4×4 camera-to-world matrices with a proper rotation.")


class RenderBackendUnavailable(DeviceUnavailable):
    """The requested render backend cannot run here (no CUDA, or nvdiffrast not installed)."""

    code = "render.backend_unavailable"
    advice = ("Use backend='auto' or 'cpu'. The 'cuda' backend needs an NVIDIA GPU and "
              "`pip install latentforge[cuda]` (nvdiffrast).")


class InvalidRenderSettings(InvalidRequest):
    """Image size, field of view or backend name out of range."""

    code = "render.invalid_settings"
    advice = "Use an image size between 8 and 4096 pixels, fov in (0, 180) degrees, backend auto|cpu|cuda."
