"""Solid primitives for the procedural shapes, as manifold3d solids.

Every builder returns a closed, oriented ``manifold3d.Manifold`` in the category's own
working units (roughly metres); the caller unions them with :func:`union` and the
generator fits the result to the canonical cube afterwards. Parts that should form one
body must overlap by a little (never merely touch), so unions stay one clean solid.
Circular resolution is kept low (12-24 segments) so a whole object stays at a few
thousand triangles.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from manifold3d import CrossSection, Manifold, OpType

Vec3 = Sequence[float]


def box(size: Vec3, center: Vec3 = (0.0, 0.0, 0.0)) -> Manifold:
    """Axis-aligned box of edge lengths ``size`` (x, y, z) centred at ``center``."""
    return Manifold.cube(tuple(float(s) for s in size), center=True).translate(tuple(float(c) for c in center))


def rounded_box(size: Vec3, radius: float, center: Vec3 = (0.0, 0.0, 0.0), segments: int = 8) -> Manifold:
    """Box with all edges rounded by ``radius`` (hull of eight corner spheres)."""
    sx, sy, sz = (float(s) for s in size)
    r = float(min(radius, 0.49 * min(sx, sy, sz)))
    if r <= 1e-6:
        return box(size, center)
    ball = Manifold.sphere(r, segments)
    corners = [ball.translate((x, y, z))
               for x in (-sx / 2 + r, sx / 2 - r)
               for y in (-sy / 2 + r, sy / 2 - r)
               for z in (-sz / 2 + r, sz / 2 - r)]
    return Manifold.batch_hull(corners).translate(tuple(float(c) for c in center))


def _frame_to(direction: np.ndarray) -> np.ndarray:
    """3x3 rotation taking +Z to the unit vector ``direction``."""
    d = direction / np.linalg.norm(direction)
    helper = np.array([1.0, 0.0, 0.0]) if abs(d[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    x = np.cross(helper, d)
    x /= np.linalg.norm(x)
    y = np.cross(d, x)
    return np.stack([x, y, d], axis=1)


def cylinder(p0: Vec3, p1: Vec3, r0: float, r1: float | None = None, segments: int = 16) -> Manifold:
    """Cylinder (or cone frustum when ``r1`` differs) from point ``p0`` to ``p1``."""
    a = np.asarray(p0, dtype=float)
    b = np.asarray(p1, dtype=float)
    length = float(np.linalg.norm(b - a))
    top = float(r0 if r1 is None else r1)
    solid = Manifold.cylinder(length, float(r0), top, segments)
    m = np.zeros((3, 4))
    m[:, :3] = _frame_to(b - a)
    m[:, 3] = a
    return solid.transform(m)


def capsule(p0: Vec3, p1: Vec3, radius: float, segments: int = 12) -> Manifold:
    """Rod with hemispherical ends from ``p0`` to ``p1`` (hull of two spheres)."""
    ball = Manifold.sphere(float(radius), segments)
    return Manifold.batch_hull([ball.translate(tuple(float(v) for v in p0)),
                                ball.translate(tuple(float(v) for v in p1))])


def polyline_tube(points: Sequence[Vec3], radius: float, segments: int = 12) -> Manifold:
    """A round tube along a polyline, as a union of capsules (smooth joints)."""
    pts = [tuple(float(v) for v in p) for p in points]
    return union([capsule(pts[i], pts[i + 1], radius, segments) for i in range(len(pts) - 1)])


def revolve(profile: Sequence[tuple[float, float]], segments: int = 24) -> Manifold:
    """Solid of revolution about +Z of a closed (radius, z) polygon, counter-clockwise.

    The polygon may touch the axis (radius 0). Points are given once (not repeated).
    """
    pts = np.asarray(profile, dtype=float)
    # CrossSection's Positive fill rule needs counter-clockwise contours.
    area = 0.5 * np.sum(pts[:, 0] * np.roll(pts[:, 1], -1) - np.roll(pts[:, 0], -1) * pts[:, 1])
    if area < 0:
        pts = pts[::-1]
    return Manifold.revolve(CrossSection([pts]), segments)


def torus(major: float, minor: float, center: Vec3 = (0.0, 0.0, 0.0), major_segments: int = 24,
          minor_segments: int = 10, degrees: float = 360.0) -> Manifold:
    """Torus (or a capped arc of one when ``degrees`` < 360) about +Z, starting on the +X axis."""
    circle = CrossSection.circle(float(minor), minor_segments).translate((float(major), 0.0))
    return Manifold.revolve(circle, major_segments, float(degrees)).translate(tuple(float(c) for c in center))


def extrude_polygon(polygon: Sequence[tuple[float, float]], height: float, z0: float = 0.0,
                    twist_deg: float = 0.0, scale_top: tuple[float, float] = (1.0, 1.0),
                    divisions: int = 0) -> Manifold:
    """Extrude a closed XY polygon along +Z from ``z0`` by ``height``."""
    pts = np.asarray(polygon, dtype=float)
    area = 0.5 * np.sum(pts[:, 0] * np.roll(pts[:, 1], -1) - np.roll(pts[:, 0], -1) * pts[:, 1])
    if area < 0:
        pts = pts[::-1]
    solid = Manifold.extrude(CrossSection([pts]), float(height), divisions, float(twist_deg),
                             (float(scale_top[0]), float(scale_top[1])))
    return solid.translate((0.0, 0.0, float(z0)))


def extrude_side(polygon_yz: Sequence[tuple[float, float]], width: float, x0: float = 0.0) -> Manifold:
    """Extrude a closed polygon drawn in the (y, z) side view along +X, from ``x0`` by ``width``.

    Used for side profiles (car bodies).
    """
    solid = extrude_polygon(polygon_yz, width)
    # extrusion runs along +Z with the polygon in XY; map (x, y, z) -> (z, x, y)
    m = np.array([[0.0, 0.0, 1.0, float(x0)],
                  [1.0, 0.0, 0.0, 0.0],
                  [0.0, 1.0, 0.0, 0.0]])
    return solid.transform(m)


def hull(points: np.ndarray | Sequence[Vec3]) -> Manifold:
    """Convex hull of 3-D points (N x 3, N >= 4, not coplanar)."""
    return Manifold.hull_points(np.asarray(points, dtype=float))


def rounded_rect(width: float, depth: float, radius: float, n_corner: int = 4) -> list[tuple[float, float]]:
    """Counter-clockwise XY outline of a rectangle with rounded corners, centred at the origin."""
    r = float(min(radius, 0.49 * min(width, depth)))
    if r <= 1e-6:
        w, d = width / 2, depth / 2
        return [(-w, -d), (w, -d), (w, d), (-w, d)]
    pts = []
    for cx, cy, a0 in ((width / 2 - r, -depth / 2 + r, -90.0), (width / 2 - r, depth / 2 - r, 0.0),
                       (-width / 2 + r, depth / 2 - r, 90.0), (-width / 2 + r, -depth / 2 + r, 180.0)):
        for t in np.linspace(np.radians(a0), np.radians(a0 + 90.0), n_corner + 1):
            pts.append((float(cx + r * np.cos(t)), float(cy + r * np.sin(t))))
    return pts


def ellipse(rx: float, ry: float, n: int = 24) -> list[tuple[float, float]]:
    """Counter-clockwise XY outline of an ellipse, ``n`` points."""
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    return [(float(rx * np.cos(a)), float(ry * np.sin(a))) for a in t]


def union(parts: Sequence[Manifold]) -> Manifold:
    """Boolean union of solids (one call, so manifold3d can batch it)."""
    parts = [p for p in parts if p is not None and not p.is_empty()]
    if not parts:
        return Manifold()
    if len(parts) == 1:
        return parts[0]
    return Manifold.batch_boolean(list(parts), OpType.Add)


def subtract(solid: Manifold, tools: Sequence[Manifold]) -> Manifold:
    """``solid`` minus every solid in ``tools``."""
    tools = [t for t in tools if t is not None and not t.is_empty()]
    if not tools:
        return solid
    return Manifold.batch_boolean([solid, *tools], OpType.Subtract)


def extrude_front(polygon_xz: Sequence[tuple[float, float]], thickness: float, y0: float = 0.0) -> Manifold:
    """Extrude a closed polygon drawn in the (x, z) front view along +Y, from ``y0`` by ``thickness``.

    Used for panels seen from the front (chair backs).
    """
    # a +90 degree turn about X takes the drawing's y to z and the extrusion axis to -y
    solid = extrude_polygon(polygon_xz, thickness).rotate((90.0, 0.0, 0.0))
    return solid.translate((0.0, float(y0 + thickness), 0.0))


def arch_outline(width: float, height: float, top: str = "flat", n: int = 8) -> list[tuple[float, float]]:
    """(x, z) outline of a panel of ``width`` x ``height`` with its bottom edge centred at the origin.

    ``top``: "flat", "arched" (a shallow arc) or "rounded" (a half-ellipse over the top third).
    """
    w = width / 2
    if top == "flat":
        return [(-w, 0.0), (w, 0.0), (w, height), (-w, height)]
    rise = 0.12 * height if top == "arched" else min(0.35 * height, w)
    pts = [(-w, 0.0), (w, 0.0)]
    for t in np.linspace(0.0, np.pi, n + 2):
        pts.append((float(w * np.cos(t)), float(height - rise + rise * np.sin(t))))
    return dedupe(pts)


def dedupe(pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """A 2-D polygon without repeated consecutive points (nor a closing repeat of the first)."""
    out: list[tuple[float, float]] = []
    for p in pts:
        if not out or abs(p[0] - out[-1][0]) + abs(p[1] - out[-1][1]) > 1e-9:
            out.append(p)
    if len(out) > 1 and abs(out[0][0] - out[-1][0]) + abs(out[0][1] - out[-1][1]) <= 1e-9:
        out.pop()
    return out
