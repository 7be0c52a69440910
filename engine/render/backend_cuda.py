"""CUDA render backend: hardware-style rasterization with nvdiffrast.

``nvdiffrast`` (PyPI ``diffrp-nvdiffrast``, the ``cuda`` extra) is imported lazily so the
engine imports without it. The rasterizer gives the visible triangle per pixel and its
perspective-correct barycentrics; world positions are interpolated from them, and
``engine.render.shading`` does the rest exactly as for the CPU backend.

Image rows: nvdiffrast puts NDC y = -1 (the bottom) in row 0; rows are flipped so row 0
is the top, as everywhere else in the engine. Pixel centres are sampled in both
backends, so their visibility agrees up to edge pixels and depth precision.
"""

from __future__ import annotations

import math

import numpy as np

from engine.render.errors import RenderBackendUnavailable
from engine.render.shading import Hits

_CONTEXTS: dict[str, object] = {}


def available() -> bool:
    """True when CUDA is present and nvdiffrast imports."""
    try:
        import torch

        if not torch.cuda.is_available():
            return False
        import nvdiffrast.torch  # noqa: F401
    except ImportError:
        return False
    return True


def _context(device: str):
    try:
        import nvdiffrast.torch as dr
    except ImportError as exc:
        raise RenderBackendUnavailable("The 'cuda' render backend needs nvdiffrast, which is not installed.",
                                       details={"import_error": str(exc)}) from exc
    if device not in _CONTEXTS:
        _CONTEXTS[device] = dr.RasterizeCudaContext(device=device)
    return _CONTEXTS[device]


def cast(vertices: np.ndarray, faces: np.ndarray, c2w: np.ndarray, size: int, fov_deg: float,
         device: str = "cuda") -> Hits:
    """Visible triangle and world point per pixel, by rasterization.

    Args:
        vertices: float ``N × 3``; faces: int ``M × 3``.
        c2w: ``B × 4 × 4`` OpenGL/Blender-style cameras; size: pixels per side;
        fov_deg: full angle of view; device: CUDA device.

    Returns:
        ``Hits`` with ``tri`` int64 ``B × H × W`` (-1 = background) and world ``points``.
    """
    import torch

    if not torch.cuda.is_available():
        raise RenderBackendUnavailable("The 'cuda' render backend was requested but CUDA is not available.")
    import nvdiffrast.torch as dr

    ctx = _context(device)
    v = torch.as_tensor(vertices, dtype=torch.float32, device=device)
    f = torch.as_tensor(faces, dtype=torch.int32, device=device).contiguous()
    cams = torch.as_tensor(c2w, dtype=torch.float32, device=device)
    n_cam = cams.shape[0]
    w2c = torch.linalg.inv(cams)

    # near/far planes hugging the mesh's bounding sphere, per camera, for depth precision
    centre = (v.amax(0) + v.amin(0)) / 2
    rad = (v - centre).norm(dim=1).amax() * 1.01 + 1e-6
    dist = (cams[:, :3, 3] - centre).norm(dim=1)
    far = dist + rad
    near = torch.maximum(dist - rad, far * 1e-4)
    focal = 1.0 / math.tan(math.radians(fov_deg) / 2)
    proj = torch.zeros(n_cam, 4, 4, device=device)
    proj[:, 0, 0] = focal
    proj[:, 1, 1] = focal
    proj[:, 2, 2] = -(far + near) / (far - near)
    proj[:, 2, 3] = -2 * far * near / (far - near)
    proj[:, 3, 2] = -1.0

    v_h = torch.cat([v, torch.ones_like(v[:, :1])], dim=1)  # N×4
    clip = torch.einsum("bij,nj->bni", proj @ w2c, v_h).contiguous()
    with torch.no_grad():
        rast, _ = dr.rasterize(ctx, clip, f, resolution=[size, size])
        points, _ = dr.interpolate(v[None].expand(n_cam, -1, -1).contiguous(), rast, f)
    tri = rast[..., 3].long() - 1
    tri = tri.flip(1)
    points = points.flip(1) * (tri >= 0)[..., None]
    return Hits(tri=tri.cpu().numpy(), points=points.double().cpu().numpy())
