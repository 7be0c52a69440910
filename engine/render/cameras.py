"""Spherical cameras looking at the origin, and their conversion to Blender.

Conventions (see also docs/geometry.md):

- World: the canonical object frame, +Z up, -Y front, objects in [-1, 1]^3.
- Spherical camera ``(polar, azimuth, radius)``, angles in radians, as in Zero-1-to-3:
  ``polar`` is measured from +Z (0 = above, pi/2 = level with the origin, pi = below);
  ``azimuth`` is measured from -Y (the front) counter-clockwise seen from above, i.e.
  toward +X: azimuth pi/2 looks at the object from +X (its right side as seen from the
  front), pi from +Y (the back). Position:
  ``radius * (sin(polar) sin(az), -sin(polar) cos(az), cos(polar))``.
- Camera-to-world matrices (``c2w``, 4×4) are OpenGL/Blender style: the camera looks down
  its local -Z, local +Y is up in the image, local +X is right. This is exactly the
  convention of a Blender camera object, so ``c2w`` *is* the camera's ``matrix_world``
  (:func:`c2w_to_blender` only checks and copies it; :func:`blender_to_c2w` strips the
  object scale). :func:`c2w_to_opencv` gives the OpenCV form (+Z forward, +Y down).
- Image axes: row 0 is the top of the image, column 0 the left; a pixel's centre is at
  ``(col + 0.5, row + 0.5)``.
- ``fov_deg`` is the full angle of view of the (square) image, Blender's ``camera.angle``
  with sensor fit AUTO.

For a spherical camera the image "up" is the direction of decreasing polar angle and
"right" is the direction of increasing azimuth; this frame is defined at the poles too
(it matches ``look_at`` with world up +Z everywhere else).
"""

from __future__ import annotations

import math

import numpy as np

from engine.render.errors import InvalidCamera

# Largest half-diagonal of the canonical cube: the radius of a sphere holding any object.
CUBE_BOUND_RADIUS = math.sqrt(3.0)


def _as_array(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def spherical_to_c2w(polar, azimuth, radius) -> np.ndarray:
    """Camera-to-world matrices of spherical cameras looking at the origin.

    Args:
        polar: polar angle from +Z in radians, scalar or ``(B,)``.
        azimuth: azimuth from -Y toward +X in radians, scalar or ``(B,)``.
        radius: distance to the origin (world units, > 0), scalar or ``(B,)``.

    Returns:
        float32 ``4 × 4`` (all scalar inputs) or ``B × 4 × 4`` (broadcast), OpenGL/Blender
        style (columns: right, up, backward = -view direction, position).
    """
    polar, azimuth, radius = np.broadcast_arrays(_as_array(polar), _as_array(azimuth), _as_array(radius))
    if not (np.isfinite(polar).all() and np.isfinite(azimuth).all() and np.isfinite(radius).all()):
        raise InvalidCamera("Camera angles and radius must be finite numbers.")
    if (radius <= 0).any():
        raise InvalidCamera(f"Camera radius must be positive, got {radius.min()}.")
    st, ct = np.sin(polar), np.cos(polar)
    sa, ca = np.sin(azimuth), np.cos(azimuth)
    back = np.stack([st * sa, -st * ca, ct], axis=-1)
    right = np.stack([ca, sa, np.zeros_like(ca)], axis=-1)
    up = np.cross(back, right)
    m = np.zeros(polar.shape + (4, 4))
    m[..., :3, 0] = right
    m[..., :3, 1] = up
    m[..., :3, 2] = back
    m[..., :3, 3] = back * radius[..., None]
    m[..., 3, 3] = 1.0
    return m.astype(np.float32)


def c2w_to_spherical(c2w) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spherical coordinates ``(polar, azimuth, radius)`` of camera positions.

    ``c2w`` is ``4 × 4`` or ``B × 4 × 4``; only the position is used (the camera is
    assumed to look at the origin). Azimuth is in (-pi, pi]. Returns float64 arrays of
    shape ``()`` or ``(B,)``.
    """
    pos = _as_array(c2w)[..., :3, 3]
    radius = np.linalg.norm(pos, axis=-1)
    polar = np.arctan2(np.linalg.norm(pos[..., :2], axis=-1), pos[..., 2])
    azimuth = np.arctan2(pos[..., 0], -pos[..., 1])
    return polar, azimuth, radius


def look_at(eye, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Camera-to-world matrix of a camera at ``eye`` looking at ``target``.

    Args:
        eye: camera position ``(3,)`` or ``B × 3``.
        target: point looked at, ``(3,)`` or ``B × 3``.
        up: world direction that should appear up in the image; when it is parallel to
            the view direction, world +Y is used instead (so looking straight down gives
            +Y up in the image).

    Returns:
        float32 ``4 × 4`` or ``B × 4 × 4`` c2w, OpenGL/Blender style.
    """
    eye, target, up = np.broadcast_arrays(_as_array(eye), _as_array(target), _as_array(up))
    back = eye - target
    norm = np.linalg.norm(back, axis=-1, keepdims=True)
    if (norm < 1e-12).any():
        raise InvalidCamera("The camera position coincides with its target.")
    back = back / norm
    right = np.cross(up, back)
    degenerate = np.linalg.norm(right, axis=-1, keepdims=True) < 1e-9
    fallback = np.cross(np.broadcast_to([0.0, 1.0, 0.0], back.shape), back)
    right = np.where(degenerate, fallback, right)
    right = right / np.linalg.norm(right, axis=-1, keepdims=True)
    true_up = np.cross(back, right)
    m = np.zeros(eye.shape[:-1] + (4, 4))
    m[..., :3, 0] = right
    m[..., :3, 1] = true_up
    m[..., :3, 2] = back
    m[..., :3, 3] = eye
    m[..., 3, 3] = 1.0
    return m.astype(np.float32)


def check_c2w(c2w) -> np.ndarray:
    """Validate camera matrices (``4 × 4`` or ``... × 4 × 4``, finite); float64 copy-free view."""
    m = _as_array(c2w)
    if m.shape[-2:] != (4, 4):
        raise InvalidCamera(f"A camera matrix must be 4×4 (or B×4×4), got shape {m.shape}.")
    if not np.isfinite(m).all():
        raise InvalidCamera("The camera matrix contains NaN or infinity.")
    return m


def c2w_to_blender(c2w) -> np.ndarray:
    """Blender camera ``matrix_world`` for our c2w (same convention: a checked copy).

    Both look down local -Z with local +Y up, so the matrices are equal; this function
    checks the rotation is orthonormal and right-handed. ``4 × 4`` or ``B × 4 × 4``
    float64 (Blender's ``mathutils.Matrix`` takes it row by row: ``Matrix(m.tolist())``).
    """
    m = check_c2w(c2w)
    rot = m[..., :3, :3]
    eye = np.eye(3)
    if not np.allclose(np.swapaxes(rot, -1, -2) @ rot, eye, atol=1e-4) or (np.linalg.det(rot) < 0).any():
        raise InvalidCamera("The camera matrix's rotation is not a proper rotation (orthonormal, det +1).")
    return m.copy()


def blender_to_c2w(matrix_world) -> np.ndarray:
    """Our c2w (float32) from a Blender camera's ``matrix_world`` (``4 × 4`` or ``B × 4 × 4``).

    Any object scale in the Blender matrix is divided out of the rotation columns.
    """
    m = check_c2w(matrix_world).copy()
    scale = np.linalg.norm(m[..., :3, :3], axis=-2, keepdims=True)
    if (scale < 1e-12).any():
        raise InvalidCamera("The Blender camera has zero scale on an axis.")
    m[..., :3, :3] /= scale
    return m.astype(np.float32)


def c2w_to_opencv(c2w) -> np.ndarray:
    """OpenCV-style c2w (camera looks down +Z, image +Y down): flips local Y and Z."""
    m = check_c2w(c2w).copy()
    m[..., :3, 1:3] *= -1
    return m.astype(np.float32)


def _check_fov(fov_deg: float) -> None:
    if not 0 < fov_deg < 180:
        raise InvalidCamera(f"Field of view must be in (0, 180) degrees, got {fov_deg}.")


def fov_to_focal(fov_deg: float, size: int) -> float:
    """Focal length in pixels of a square ``size``-pixel image with full angle ``fov_deg``."""
    _check_fov(fov_deg)
    return 0.5 * size / math.tan(math.radians(fov_deg) / 2)


def intrinsics(fov_deg: float, size: int) -> np.ndarray:
    """3 × 3 pinhole matrix (OpenCV form, pixel units, principal point at the centre)."""
    f = fov_to_focal(fov_deg, size)
    return np.array([[f, 0.0, size / 2], [0.0, f, size / 2], [0.0, 0.0, 1.0]], dtype=np.float32)


def projection_matrix(fov_deg: float, near, far) -> np.ndarray:
    """OpenGL perspective matrix(es) for a square image: camera space → clip space.

    ``near``/``far`` (> 0) are scalars or ``(B,)``; returns float32 ``4 × 4`` or
    ``B × 4 × 4``. NDC x is right and NDC y is up: pixel ``(row, col)`` of a ``size``
    image has its centre at ``x = (col + 0.5) / size * 2 - 1``,
    ``y = 1 - (row + 0.5) / size * 2``.
    """
    _check_fov(fov_deg)
    near, far = np.broadcast_arrays(_as_array(near), _as_array(far))
    if (near <= 0).any() or (far <= near).any():
        raise InvalidCamera("Clip planes need 0 < near < far.")
    f = 1.0 / math.tan(math.radians(fov_deg) / 2)
    m = np.zeros(near.shape + (4, 4))
    m[..., 0, 0] = f
    m[..., 1, 1] = f
    m[..., 2, 2] = -(far + near) / (far - near)
    m[..., 2, 3] = -2 * far * near / (far - near)
    m[..., 3, 2] = -1.0
    return m.astype(np.float32)


def fov_to_blender_lens(fov_deg: float, sensor_mm: float = 36.0) -> float:
    """Blender ``camera.lens`` (mm) giving ``fov_deg`` on a sensor of ``sensor_mm`` (fit AUTO)."""
    return 0.5 * sensor_mm / math.tan(math.radians(fov_deg) / 2)


def fit_radius(fov_deg: float, bound_radius: float = CUBE_BOUND_RADIUS, margin: float = 1.0) -> float:
    """Smallest camera radius at which a sphere of ``bound_radius`` fills the view, times ``margin``.

    With the default bound (the canonical cube's half-diagonal) nothing in [-1, 1]^3 is
    ever cut off, from any direction.
    """
    _check_fov(fov_deg)
    return margin * bound_radius / math.sin(math.radians(fov_deg) / 2)


def orbit_cameras(n: int, polar: float = math.radians(60.0), radius: float | None = None,
                  azimuth_start: float = 0.0, fov_deg: float = 40.0) -> np.ndarray:
    """``n`` cameras evenly spaced in azimuth on a circle of constant polar angle.

    Args:
        n: number of views (>= 1).
        polar: polar angle from +Z (radians); default 60° (looking slightly down).
        radius: distance to the origin; default :func:`fit_radius` for ``fov_deg``.
        azimuth_start: azimuth of the first view (radians, 0 = front).
        fov_deg: only used for the default radius.

    Returns:
        float32 ``n × 4 × 4`` c2w matrices, azimuths ``start + 2 pi k / n``.
    """
    if n < 1:
        raise InvalidCamera(f"An orbit needs at least one camera, got {n}.")
    r = fit_radius(fov_deg) if radius is None else radius
    az = azimuth_start + 2 * np.pi * np.arange(n) / n
    return spherical_to_c2w(np.full(n, polar), az, np.full(n, r))


def relative_pose(src: tuple[float, float, float], dst: tuple[float, float, float]) -> np.ndarray:
    """Zero-1-to-3 relative camera ``[Δpolar, sin Δazimuth, cos Δazimuth, Δradius]``.

    ``src`` and ``dst`` are ``(polar, azimuth, radius)`` (radians, world units); float32 ``(4,)``.
    """
    dp = dst[0] - src[0]
    da = dst[1] - src[1]
    return np.array([dp, math.sin(da), math.cos(da), dst[2] - src[2]], dtype=np.float32)
