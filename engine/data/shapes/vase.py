"""Vases: hollow, open at the top. Body form (amphora, cylinder, trumpet, bowl, gourd, ovoid
as revolved profiles; square or hexagonal sections, optionally twisted, as extrusions),
flared lip, pedestal foot, side handles. Working units are metres."""

from __future__ import annotations

import math

from manifold3d import Manifold

from engine.data.captions import article, tidy
from engine.data.shapes import primitives as P

SPACE = {
    "form": ["amphora", "cylinder", "trumpet", "bowl", "gourd", "ovoid", "square", "hexagonal"],
    "height": (0.2, 0.45),
    "radius": (0.06, 0.12),
    "wall": (0.004, 0.01),
    "lip": [True, False],
    "foot": [True, False],
    "handles": [0, 0, 2],
    "twist_deg": (0.0, 60.0),
    "top_scale": (0.6, 1.3),
}


def _radius(form: str, s: float, R: float) -> float:
    """Outer radius of a revolved form at relative height s in [0, 1]."""
    if form == "amphora":
        return R * (0.55 + 0.45 * math.sin(math.pi * min(1.0, s / 0.8)) + (0.25 * (s - 0.8) / 0.2 if s > 0.8 else 0))
    if form == "cylinder":
        return R * 0.8
    if form == "trumpet":
        return R * (0.35 + 0.65 * s ** 2)
    if form == "bowl":
        return R * (0.6 + 0.5 * math.sin(math.pi * 0.5 * s))
    if form == "gourd":
        return R * (0.45 + 0.5 * abs(math.sin(math.pi * (0.15 + 1.7 * s) / 1.0)) ** 1.2 * (1.0 - 0.35 * s))
    return R * (0.5 + 0.5 * math.sin(math.pi * (0.1 + 0.8 * s)))  # ovoid


def _height(p: dict) -> float:
    return p["height"] * (0.45 if p["form"] == "bowl" else 1.0)


def build(p: dict) -> Manifold:
    """The vase solid for parameters ``p``."""
    form, R, t = p["form"], p["radius"], p["wall"]
    H = _height(p)
    z0 = 0.03 if p["foot"] else 0.0
    bottom = z0 + max(2 * t, 0.01)
    steps = [i / 16 for i in range(17)]
    parts: list[Manifold] = []
    if form in ("square", "hexagonal"):
        if form == "square":
            poly = P.rounded_rect(1.6 * R, 1.6 * R, 0.15 * R, 2)
            apothem = 0.8 * R
        else:
            poly = [(0.9 * R * math.cos(math.radians(60 * k)), 0.9 * R * math.sin(math.radians(60 * k))) for k in range(6)]
            apothem = 0.9 * R * math.cos(math.radians(30))
        sc = p["top_scale"]
        parts.append(P.extrude_polygon(poly, H - z0, z0, p["twist_deg"], (sc, sc), divisions=8))
        # a round cavity inside the (twisted) polygon: its inscribed circle is rotation-invariant
        inner = [(0.0, bottom)] + [(apothem * (1 + (sc - 1) * s) - t - 0.002, bottom + s * (H + 0.01 - bottom))
                                   for s in (0.0, 0.5, 1.0)] + [(0.0, H + 0.02)]
        cavity = P.revolve(inner, 24)
        rim_r = apothem * sc
        base_r = apothem
        side_r = [apothem * (1 + (sc - 1) * s) for s in steps]
    else:
        radii = [_radius(form, s, R) for s in steps]
        outer = [(0.0, z0)] + [(r, z0 + s * (H - z0)) for r, s in zip(radii, steps)]
        if p["lip"]:
            outer += [(radii[-1] + 0.008, H), (radii[-1] + 0.008, H + 0.006), (radii[-1] - t, H + 0.006)]
        else:
            outer += [(radii[-1] - t, H)]
        inner = [(r - t, z0 + s * (H - z0)) for r, s in zip(radii, steps) if z0 + s * (H - z0) > bottom]
        # outer and inner walls form one closed (radius, z) polygon: a cup with an open top
        prof = outer + list(reversed(inner)) + [(0.0, bottom)]
        parts.append(P.revolve(P.dedupe(prof), 32))
        cavity = None
        rim_r, base_r, side_r = radii[-1], radii[0], radii
    if p["foot"]:
        parts.append(P.cylinder((0, 0, 0.0), (0, 0, z0 + 0.01), 0.8 * base_r + 0.01, 0.6 * base_r, 28))
    if p["handles"] == 2:
        # loops from the upper body out to the side and back into the belly, at +-X
        hi = int(0.8 * 16)
        lo = int(0.45 * 16)
        for sx in (-1, 1):
            za, zb = z0 + steps[hi] * (H - z0), z0 + steps[lo] * (H - z0)
            xa, xb = side_r[hi] - t, side_r[lo] - t
            out = max(xa, xb) + 0.04
            parts.append(P.polyline_tube([(sx * xa, 0, za), (sx * out, 0, za + 0.01), (sx * (out + 0.01), 0, (za + zb) / 2),
                                          (sx * xb, 0, zb)], 0.007, 10))
    solid = P.union(parts)
    if cavity is not None:
        solid = P.subtract(solid, [cavity])
    elif p["handles"] == 2:
        # cut the cavity again so handle ends never show inside the revolved wall
        inner_cut = [(0.0, bottom)] + [(r - t, z0 + s * (H - z0)) for r, s in zip(side_r, steps)
                                       if z0 + s * (H - z0) > bottom] + [(side_r[-1] - t, H + 0.02), (0.0, H + 0.02)]
        solid = P.subtract(solid, [P.revolve(P.dedupe(inner_cut), 32)])
    return solid


def captions(p: dict) -> list[str]:
    """Several phrasings describing the vase's salient attributes."""
    form = p["form"]
    twisted = form in ("square", "hexagonal") and p["twist_deg"] > 20
    name = {"amphora": "amphora-shaped", "cylinder": "cylindrical", "trumpet": "trumpet-shaped flared",
            "bowl": "wide bowl-shaped", "gourd": "double-gourd", "ovoid": "egg-shaped",
            "square": "square", "hexagonal": "hexagonal"}[form]
    if twisted:
        name = "twisted " + name
    if form in ("square", "hexagonal"):
        name += " tapering" if p["top_scale"] < 0.85 else " widening" if p["top_scale"] > 1.15 else ""
    tall = "tall" if _height(p) / p["radius"] > 3.2 else "short" if _height(p) / p["radius"] < 2.0 else ""
    handles = "two handles" if p["handles"] == 2 else "no handles"
    foot = "a pedestal foot" if p["foot"] else "a flat base"
    out = [
        f"{article((tall + ' ' + name + ' vase').strip())} with {handles}",
        f"{article(name + ' vase')} on {foot}",
        f"vase, {name}, {handles}, {foot}" + (", flared lip" if p["lip"] and form not in ("square", "hexagonal") else ""),
        f"{article('ceramic-style ' + ('twisted ' if twisted else '') + 'vase')} with {'handles' if p['handles'] else 'an open top'}",
    ]
    return tidy(out)
