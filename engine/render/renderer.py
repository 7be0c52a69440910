"""``render_mesh``: RGB, depth, normals and mask of a mesh from a batch of cameras.

Two backends with the same outputs: ``cpu`` (Embree ray casting, ``backend_cpu``) and
``cuda`` (nvdiffrast rasterization, ``backend_cuda``); ``auto`` picks ``cuda`` when CUDA
and nvdiffrast are present. Backends only report visibility; ``shading`` turns it into
the outputs, so lighting, depth and normal conventions cannot drift between them.
Camera and image conventions are those of ``engine.render.cameras``.
"""

from __future__ import annotations

import numpy as np

from engine.geometry.validate import check_mesh
from engine.render import backend_cpu, backend_cuda
from engine.render.cameras import check_c2w
from engine.render.errors import InvalidRenderSettings, RenderBackendUnavailable
from engine.render.shading import shade

BACKENDS = ("auto", "cpu", "cuda")
# rays per backend call: bounds the per-ray arrays (~50 MB each) whatever the image size
_RAYS_PER_CALL = 1 << 21


def resolve_backend(backend: str = "auto") -> str:
    """``auto`` → ``cuda`` when CUDA and nvdiffrast are usable, else ``cpu``; checks names."""
    if backend not in BACKENDS:
        raise InvalidRenderSettings(f"Unknown render backend {backend!r}; use one of {', '.join(BACKENDS)}.")
    if backend == "auto":
        return "cuda" if backend_cuda.available() else "cpu"
    if backend == "cuda" and not backend_cuda.available():
        raise RenderBackendUnavailable("The 'cuda' render backend needs CUDA and nvdiffrast; "
                                       "one of them is missing here.")
    return backend


def _downsample(out: dict[str, np.ndarray], k: int) -> dict[str, np.ndarray]:
    """Average ``k × k`` blocks of a supersampled render (see ``render_mesh``)."""
    b, hk, wk = out["mask"].shape
    h, w = hk // k, wk // k
    covered = out["mask"].reshape(b, h, k, w, k)
    count = covered.sum(axis=(2, 4))
    alpha = (count / (k * k)).astype(np.float32)
    mask = alpha >= 0.5
    rgb = out["rgb"].reshape(b, h, k, w, k, 3).astype(np.float32).mean(axis=(2, 4))
    # depth and normals average the covered samples only: background must not pull them to 0
    depth = out["depth"].reshape(b, h, k, w, k).sum(axis=(2, 4)) / np.maximum(count, 1)
    normals = out["normals"].reshape(b, h, k, w, k, 3).sum(axis=(2, 4))
    length = np.linalg.norm(normals, axis=-1, keepdims=True)
    normals = np.divide(normals, length, out=np.zeros_like(normals), where=length > 0)
    return {"rgb": np.round(rgb).astype(np.uint8), "depth": np.where(mask, depth, 0).astype(np.float32),
            "normals": np.where(mask[..., None], normals, 0).astype(np.float32), "mask": mask, "alpha": alpha}


def render_mesh(vertices, faces, c2w, size: int = 256, fov_deg: float = 40.0, backend: str = "auto",
                color=(0.8, 0.8, 0.8), background=(255, 255, 255), supersample: int = 1
                ) -> dict[str, np.ndarray]:
    """Render a triangle mesh from a batch of cameras.

    Args:
        vertices: ``N × 3`` mesh vertices (numpy or torch, world units).
        faces: ``M × 3`` triangle indices.
        c2w: ``B × 4 × 4`` (or ``4 × 4``) camera-to-world matrices, OpenGL/Blender style
            (see ``engine.render.cameras``).
        size: image width = height in pixels (8..4096).
        fov_deg: full angle of view in degrees.
        backend: ``auto``, ``cpu`` or ``cuda``.
        color: surface albedo, RGB in [0, 1].
        background: RGB 0..255 where nothing is hit.
        supersample: anti-aliasing factor ``k`` (1..4): render ``k·size`` pixels per side
            and average ``k × k`` blocks (``k²`` times the work). Then ``mask`` is coverage
            >= 1/2, and depth/normals average the covered samples of a pixel.

    Returns:
        dict with ``rgb`` uint8 ``B × H × W × 3`` (flat-shaded, fixed world lights),
        ``depth`` float32 ``B × H × W`` (along the view axis; 0 on background),
        ``normals`` float32 ``B × H × W × 3`` (world space, unit, facing the camera; 0 on
        background), ``mask`` bool ``B × H × W``, ``alpha`` float32 ``B × H × W`` (pixel
        coverage in [0, 1]; equal to ``mask`` without supersampling). Row 0 is the top.
    """
    v, f = check_mesh(vertices, faces)
    cams = check_c2w(c2w)
    if cams.ndim == 2:
        cams = cams[None]
    if cams.ndim != 3:
        raise InvalidRenderSettings(f"c2w must be 4×4 or B×4×4, got shape {cams.shape}.")
    if isinstance(size, bool) or int(size) != size or not 8 <= int(size) <= 4096:
        raise InvalidRenderSettings(f"Image size must be an integer in [8, 4096], got {size!r}.")
    if not 0 < float(fov_deg) < 180:
        raise InvalidRenderSettings(f"Field of view must be in (0, 180) degrees, got {fov_deg}.")
    if isinstance(supersample, bool) or supersample not in (1, 2, 3, 4):
        raise InvalidRenderSettings(f"supersample must be 1, 2, 3 or 4, got {supersample!r}.")
    size = int(size)
    name = resolve_backend(backend)
    cast = backend_cuda.cast if name == "cuda" else backend_cpu.cast
    per_call = max(1, _RAYS_PER_CALL // (size * supersample) ** 2)
    parts = []
    for i in range(0, len(cams), per_call):
        chunk = cams[i:i + per_call]
        out = shade(cast(v, f, chunk, size * supersample, float(fov_deg)), v, f, chunk, color, background)
        if supersample > 1:
            out = _downsample(out, supersample)
        else:
            out["alpha"] = out["mask"].astype(np.float32)
        parts.append(out)
    if len(parts) == 1:
        return parts[0]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
