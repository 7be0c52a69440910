"""CUDA render backend: hardware-style rasterization with nvdiffrast.

``nvdiffrast`` (PyPI ``diffrp-nvdiffrast``, the ``cuda`` extra) is imported lazily so the
engine imports without it. The rasterizer gives the visible triangle per pixel and its
perspective-correct barycentrics; world positions are interpolated from them, and
``engine.render.shading`` does the rest exactly as for the CPU backend.

Image rows: nvdiffrast puts NDC y = -1 (the bottom) in row 0; rows are flipped so row 0
is the top, as everywhere else in the engine. Pixel centres are sampled in both
backends, so their visibility agrees up to edge pixels and depth precision.

nvdiffrast compiles its CUDA extension on first use (nvcc and ninja needed, about half a
minute on 16 cores) and caches it under ``TORCH_EXTENSIONS_DIR``; ``_load_plugin`` makes
that load work on torch builds whose extensions use pybind11 3 (seen with torch 2.11, 2.14).
"""

from __future__ import annotations

import sys

import numpy as np

from engine.render.cameras import projection_matrix
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


def _load_plugin() -> None:
    """Build (first time) and load nvdiffrast's CUDA extension.

    nvdiffrast 0.3.3 has torch build and load the extension, drops the module torch
    returns, and imports it again by name from ``sys.modules``. Extensions built with
    pybind11 3 (torch 2.11, 2.14) use multi-phase initialisation and are not put in
    ``sys.modules`` when loaded from a path, so that import fails with
    ``ModuleNotFoundError: nvdiffrast_plugin_...``. Registering the module that torch
    loaded (rather than loading the library a second time) fixes it.
    """
    import torch.utils.cpp_extension as cpp_extension
    from nvdiffrast.torch import ops

    if ops._cached_plugin.get(False) is not None:
        return
    load = cpp_extension._import_module_from_library

    def load_and_register(module_name, path, is_python_module):
        module = load(module_name, path, is_python_module)
        if is_python_module:
            sys.modules.setdefault(module_name, module)
        return module

    cpp_extension._import_module_from_library = load_and_register
    try:
        ops._get_plugin(False)
    except Exception as exc:  # build failed (no nvcc or ninja, a compiler error, ...)
        raise RenderBackendUnavailable("nvdiffrast's CUDA extension could not be built or loaded.",
                                       details={"error": str(exc)[-2000:]}) from exc
    finally:
        cpp_extension._import_module_from_library = load


def _context(device: str):
    try:
        import nvdiffrast.torch as dr
    except ImportError as exc:
        raise RenderBackendUnavailable("The 'cuda' render backend needs nvdiffrast, which is not installed.",
                                       details={"import_error": str(exc)}) from exc
    if device not in _CONTEXTS:
        _load_plugin()
        _CONTEXTS[device] = dr.RasterizeCudaContext(device=device)
    return _CONTEXTS[device]


def clip_positions(v, c2w, fov_deg: float):
    """Clip-space positions of the vertices for each camera (torch, any device).

    Args:
        v: float32 tensor ``N × 3`` world vertices.
        c2w: float32 tensor ``B × 4 × 4`` OpenGL/Blender-style cameras.
        fov_deg: full angle of view.

    Returns:
        ``B × N × 4`` clip coordinates (OpenGL: NDC x right, y up, z in [-1, 1] between
        near/far planes that hug the mesh's bounding sphere, for depth precision).
    """
    import torch

    w2c = torch.linalg.inv(c2w)
    centre = (v.amax(0) + v.amin(0)) / 2
    rad = (v - centre).norm(dim=1).amax() * 1.01 + 1e-6
    dist = (c2w[:, :3, 3] - centre).norm(dim=1)
    far = dist + rad
    near = torch.maximum(dist - rad, far * 1e-4)
    proj = torch.as_tensor(projection_matrix(fov_deg, near.cpu().numpy(), far.cpu().numpy()), device=v.device)
    v_h = torch.cat([v, torch.ones_like(v[:, :1])], dim=1)  # N×4
    return torch.einsum("bij,nj->bni", proj @ w2c, v_h).contiguous()


def cast(vertices: np.ndarray, faces: np.ndarray, c2w: np.ndarray, size: int, fov_deg: float,
         device: str = "cuda") -> Hits:
    """Visible triangle and world point per pixel, by rasterization.

    Args:
        vertices: float ``N × 3``; faces: int ``M × 3`` (triangle ids are exact up to
            2^24 faces, the precision of nvdiffrast's float output).
        c2w: ``B × 4 × 4`` OpenGL/Blender-style cameras; size: pixels per side;
        fov_deg: full angle of view; device: CUDA device.

    Returns:
        ``Hits`` with ``tri`` int64 ``B × H × W`` (-1 = background) and world ``points``.
    """
    import torch

    if not torch.cuda.is_available():
        raise RenderBackendUnavailable("The 'cuda' render backend was requested but CUDA is not available.")
    ctx = _context(device)
    import nvdiffrast.torch as dr

    v = torch.as_tensor(vertices, dtype=torch.float32, device=device)
    f = torch.as_tensor(faces, dtype=torch.int32, device=device).contiguous()
    cams = torch.as_tensor(c2w, dtype=torch.float32, device=device)
    with torch.no_grad():
        clip = clip_positions(v, cams, fov_deg)
        rast, _ = dr.rasterize(ctx, clip, f, resolution=[size, size])
        points, _ = dr.interpolate(v[None].expand(len(cams), -1, -1).contiguous(), rast, f)
    tri = rast[..., 3].long().flip(1) - 1  # row 0 of nvdiffrast is the bottom
    points = points.flip(1) * (tri >= 0)[..., None]
    return Hits(tri=tri.cpu().numpy(), points=points.double().cpu().numpy())
