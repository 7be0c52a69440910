"""Camera rays and the shading shared by every render backend.

Backends only find, per pixel, which triangle is visible and where (``Hits``); the
normals, depth, colours and mask are computed here from those hits, once, so all
backends give the same outputs by construction up to the visibility itself.

Shading: a fixed *world-space* light rig (a key light from the front-right-top, a weaker
fill from the back-left, plus ambient), Lambertian, on flat face normals. Lights fixed
in the world rather than to the camera keep a surface point's colour the same in every
view, which novel-view training needs. Faces are lit two-sided: a normal is flipped
toward the camera when its back is seen (open meshes, inconsistent winding).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.render.cameras import fov_to_focal

# unit directions *toward* the lights, world frame (+Z up, -Y front)
KEY_LIGHT = np.array([0.45, -0.65, 0.61]) / np.linalg.norm([0.45, -0.65, 0.61])
FILL_LIGHT = np.array([-0.6, 0.55, 0.3]) / np.linalg.norm([-0.6, 0.55, 0.3])
AMBIENT, KEY, FILL = 0.25, 0.65, 0.25


@dataclass
class Hits:
    """Per-pixel visibility from a backend. Shapes use B cameras, H = W = size.

    tri: int64 ``B × H × W`` index of the visible face, -1 for background.
    points: float64 ``B × H × W × 3`` world position of the visible point (0 for background).
    """

    tri: np.ndarray
    points: np.ndarray


def camera_rays(c2w: np.ndarray, size: int, fov_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """World-space rays through pixel centres.

    Args:
        c2w: ``B × 4 × 4`` OpenGL/Blender-style camera-to-world matrices.
        size: image width = height in pixels.
        fov_deg: full angle of view.

    Returns:
        origins float64 ``B × H × W × 3`` (the camera centres), directions float64
        ``B × H × W × 3`` (unit length); row 0 is the top of the image.
    """
    f = fov_to_focal(fov_deg, size)
    centres = (np.arange(size) + 0.5 - size / 2) / f
    x = np.broadcast_to(centres[None, :], (size, size))
    y = np.broadcast_to(-centres[:, None], (size, size))
    d_cam = np.stack([x, y, -np.ones((size, size))], axis=-1).reshape(-1, 3)  # camera looks down -Z
    d_cam /= np.linalg.norm(d_cam, axis=-1, keepdims=True)
    rot = c2w[:, :3, :3].astype(np.float64)
    dirs = np.matmul(d_cam[None], np.swapaxes(rot, 1, 2)).reshape(len(c2w), size, size, 3)
    origins = np.broadcast_to(c2w[:, None, None, :3, 3].astype(np.float64), dirs.shape)
    return origins, dirs


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit face normals ``M × 3`` (float64) by the right-hand rule; zero for degenerate faces."""
    tri = vertices[faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    length = np.linalg.norm(n, axis=1, keepdims=True)
    return np.divide(n, length, out=np.zeros_like(n), where=length > 0)


def shade(hits: Hits, vertices: np.ndarray, faces: np.ndarray, c2w: np.ndarray,
          color=(0.8, 0.8, 0.8), background=(255, 255, 255)) -> dict[str, np.ndarray]:
    """Turn backend hits into the renderer's outputs.

    Args:
        hits: per-pixel face ids and world points (``Hits``).
        vertices, faces: the mesh, float64 ``N × 3`` / int64 ``M × 3``.
        c2w: ``B × 4 × 4`` cameras the hits came from.
        color: albedo, RGB in [0, 1].
        background: RGB 0..255 of pixels with no surface.

    Returns:
        dict with ``rgb`` uint8 ``B × H × W × 3``, ``depth`` float32 ``B × H × W`` (distance
        along the camera's view axis, 0 on background), ``normals`` float32 ``B × H × W × 3``
        (world-space unit normals facing the camera, 0 on background), ``mask`` bool
        ``B × H × W``.
    """
    mask = hits.tri >= 0
    b, r, c = np.nonzero(mask)  # only covered pixels are shaded: objects cover a fraction of the image
    n = face_normals(vertices, faces)[hits.tri[b, r, c]]
    pts = hits.points[b, r, c]
    eye = c2w[b, :3, 3].astype(np.float64)
    facing_away = np.einsum("ij,ij->i", n, eye - pts) < 0
    n[facing_away] *= -1
    forward = -c2w[b, :3, 2].astype(np.float64)
    light = (AMBIENT + KEY * np.clip(n @ KEY_LIGHT, 0, None) + FILL * np.clip(n @ FILL_LIGHT, 0, None))
    rgb = np.empty(mask.shape + (3,), dtype=np.uint8)
    rgb[:] = np.asarray(background, dtype=np.uint8)
    rgb[b, r, c] = np.round(np.clip(light[:, None] * np.asarray(color, dtype=np.float64), 0, 1) * 255)
    depth = np.zeros(mask.shape, dtype=np.float32)
    depth[b, r, c] = np.einsum("ij,ij->i", pts - eye, forward)
    normals = np.zeros(mask.shape + (3,), dtype=np.float32)
    normals[b, r, c] = n
    return {"rgb": rgb, "depth": depth, "normals": normals, "mask": mask}
