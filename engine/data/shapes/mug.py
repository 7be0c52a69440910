"""Mugs: body profile (straight, tapered, flared, barrel, conical), proportions, wall
thickness, foot ring, handle shape (round C, squared, D-shaped ear, angular, twin loops or
none for a tumbler-style cup). The cavity is cut after the handle is joined so nothing pokes
inside. Working units are metres; the handle sits on +X."""

from __future__ import annotations

import math

from manifold3d import Manifold

from engine.data.captions import article, tidy
from engine.data.shapes import primitives as P

SPACE = {
    "body": ["straight", "tapered", "flared", "barrel", "conical"],
    "height": (0.08, 0.13),
    "radius": (0.035, 0.055),
    "wall": (0.004, 0.008),
    "foot_ring": [True, False],
    "handle": ["round", "round", "square", "ear", "angular", "none"],
    "handle_size": (0.8, 1.2),
    "handle_thickness": (0.005, 0.009),
    "rim_lip": [True, False],
}


def _radius_at(p: dict, s: float) -> float:
    """Outer radius at relative height s in [0, 1]."""
    r = p["radius"]
    kind = p["body"]
    if kind == "tapered":
        return r * (0.82 + 0.18 * s)
    if kind == "flared":
        return r * (0.8 + 0.35 * s ** 2)
    if kind == "barrel":
        return r * (0.85 + 0.25 * math.sin(math.pi * s))
    if kind == "conical":
        return r * (1.15 - 0.35 * s)
    return r


def build(p: dict) -> Manifold:
    """The mug solid for parameters ``p``."""
    H, t = p["height"], p["wall"]
    steps = [i / 8 for i in range(9)]
    outer = [(0.0, 0.0)]
    if p["foot_ring"]:
        r0 = _radius_at(p, 0.0)
        outer += [(0.85 * r0, 0.0), (0.88 * r0, 0.006)]
    outer += [(_radius_at(p, s), max(s * H, 0.008 if p["foot_ring"] else 0.0)) for s in steps]
    if p["rim_lip"]:
        outer.append((_radius_at(p, 1.0) + 0.0025, H))
        outer.append((_radius_at(p, 1.0) + 0.0025, H + 0.003))
        outer.append((0.0, H + 0.003))
    else:
        outer.append((0.0, H))
    body = P.revolve(P.dedupe(outer), 32)
    bottom = max(1.5 * t, 0.008)
    cavity = P.revolve([(0.0, bottom)] + [(_radius_at(p, s) - t, bottom + s * (H + 0.01 - bottom)) for s in steps[1:]]
                       + [(0.0, H + 0.02)], 32)
    parts = [body]
    handle = p["handle"]
    hs = p["handle_size"]
    ht = p["handle_thickness"]
    z_lo, z_hi = 0.22 * H, 0.8 * H
    x_lo, x_hi = _radius_at(p, 0.22) - 0.5 * t, _radius_at(p, 0.8) - 0.5 * t
    reach = 0.032 * hs
    if handle == "round":
        zc, rr = (z_lo + z_hi) / 2, (z_hi - z_lo) / 2
        xc = (x_lo + x_hi) / 2
        pts = [(xc + 0.9 * reach * math.sin(a), 0.0, zc + rr * math.cos(a)) for a in [i * math.pi / 10 for i in range(11)]]
        pts = [(x_hi, 0.0, z_hi)] + pts + [(x_lo, 0.0, z_lo)]
        parts.append(P.polyline_tube(pts, ht, 10))
    elif handle == "square":
        parts.append(P.polyline_tube([(x_hi, 0, z_hi), (x_hi + reach, 0, z_hi), (x_hi + reach, 0, z_lo),
                                      (x_lo, 0, z_lo)], ht, 10))
    elif handle == "ear":
        # D-shaped: flat top bar then a rounded drop, thicker and flattened
        zc = (z_lo + z_hi) / 2
        pts = [(x_hi, 0, z_hi), (x_hi + 0.6 * reach, 0, z_hi)]
        pts += [(x_hi + 0.6 * reach + 0.5 * reach * math.sin(a), 0, zc + (z_hi - zc) * math.cos(a))
                for a in [i * math.pi / 8 for i in range(1, 8)]]
        pts += [(x_lo + 0.3 * reach, 0, z_lo), (x_lo, 0, z_lo)]
        parts.append(P.polyline_tube(pts, ht, 10).scale((1.0, 1.6, 1.0)))
    elif handle == "angular":
        parts.append(P.polyline_tube([(x_hi, 0, z_hi), (x_hi + 1.1 * reach, 0, (z_hi + z_lo) / 2 + 0.1 * H),
                                      (x_lo, 0, z_lo)], ht, 10))
    body_all = P.union(parts)
    return P.subtract(body_all, [cavity])


def captions(p: dict) -> list[str]:
    """Several phrasings describing the mug's salient attributes."""
    body = {"straight": "straight-sided", "tapered": "tapered", "flared": "flared", "barrel": "barrel-shaped",
            "conical": "cone-shaped"}[p["body"]]
    tall = "tall" if p["height"] / p["radius"] > 2.6 else "short wide" if p["height"] / p["radius"] < 1.9 else ""
    handle = {"round": "a round C-shaped handle", "square": "a squared-off handle", "ear": "a wide D-shaped handle",
              "angular": "an angular handle", "none": "no handle"}[p["handle"]]
    foot = "a foot ring" if p["foot_ring"] else "a flat bottom"
    thick = "thick-walled" if p["wall"] > 0.0065 else "thin-walled" if p["wall"] < 0.005 else ""
    out = [
        f"{article((tall + ' ' + body + ' mug').strip())} with {handle}",
        f"{article((thick + ' mug').strip())} with {handle} and {foot}",
        f"mug, {body}, {handle}" + (", rolled rim" if p["rim_lip"] else ""),
        f"{'handleless tumbler-style mug' if p['handle'] == 'none' else 'coffee mug'} with {article(body + ' body')}",
    ]
    return tidy(out)
