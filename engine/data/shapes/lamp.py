"""Lamps: table or floor height, base (disc, square, dome, tripod), stem (straight, bent arc,
two-segment desk arm, gooseneck), shade (cone, drum, dome, globe, bell) with an open
bottom where it is a shell. Working units are metres; a bent arm reaches towards -Y."""

from __future__ import annotations

import math

from manifold3d import Manifold

from engine.data.captions import article, tidy
from engine.data.shapes import primitives as P

SPACE = {
    "kind": ["table", "table", "floor"],
    "height_scale": (0.85, 1.15),
    "base": ["disc", "square", "dome", "tripod"],
    "base_size": (0.7, 1.3),
    "stem": ["straight", "straight", "arc", "desk_arm", "gooseneck"],
    "stem_radius": (0.008, 0.02),
    "shade": ["cone", "drum", "dome", "globe", "bell"],
    "shade_size": (0.8, 1.25),
    "shade_tilt_deg": (0.0, 35.0),
}


def _shade(kind: str, r: float) -> Manifold:
    """Shade whose top (the attachment point) is at the origin, hanging down along -Z."""
    t = 0.006
    if kind == "globe":
        return Manifold.sphere(r * 0.8, 24).translate((0.0, 0.0, -0.75 * r))
    if kind == "cone":
        top, bottom, h = 0.45 * r, r, 1.0 * r
        prof = [(0.0, 0.0), (top, 0.0), (bottom, -h), (bottom - t, -h), (top - t, -t), (0.0, -t)]
    elif kind == "drum":
        h = 1.0 * r
        prof = [(0.0, 0.0), (r, 0.0), (r, -h), (r - t, -h), (r - t, -t), (0.0, -t)]
    elif kind == "bell":
        h = 1.1 * r
        outer = [(0.35 * r + 0.65 * r * (s ** 2.2), -h * s) for s in (0.0, 0.25, 0.5, 0.75, 1.0)]
        inner = [(x - t, z) for x, z in reversed(outer)]
        inner[-1] = (inner[-1][0], -t)
        prof = [(0.0, 0.0), *outer, *inner, (0.0, -t)]
    else:  # dome: a half shell opening downwards
        return P.revolve(_dome_profile(r, t), 24)
    return P.revolve(P.dedupe(prof), 24)


def _dome_profile(r: float, t: float) -> list[tuple[float, float]]:
    """(radius, z) outline of a hemispherical shell of outer radius r, apex at z=0, rim at z=-r."""
    outer = [(r * math.sin(math.radians(a)), -r + r * math.cos(math.radians(a))) for a in range(0, 91, 10)]
    inner = [((r - t) * math.sin(math.radians(a)), -r + (r - t) * math.cos(math.radians(a))) for a in range(80, -1, -10)]
    return P.dedupe([*outer, (r - t, -r), *inner[:-1], (0.0, -t)])


def build(p: dict) -> Manifold:
    """The lamp solid for parameters ``p``."""
    floor = p["kind"] == "floor"
    H = (1.6 if floor else 0.55) * p["height_scale"]
    shade_r = (0.22 if floor else 0.14) * p["shade_size"]
    base_r = (0.16 if floor else 0.09) * p["base_size"]
    sr = p["stem_radius"] * (1.4 if floor else 1.0)
    parts: list[Manifold] = []
    base_h = 0.025
    if p["base"] == "disc":
        parts.append(P.cylinder((0, 0, 0), (0, 0, base_h), base_r, 0.9 * base_r, 28))
    elif p["base"] == "square":
        parts.append(P.rounded_box((1.8 * base_r, 1.8 * base_r, base_h + 0.01), 0.006, (0, 0, (base_h + 0.01) / 2)))
    elif p["base"] == "dome":
        base_h = 0.6 * base_r
        parts.append(P.revolve([(0.0, 0.0), (base_r, 0.0), (base_r, 0.01)] +
                               [(base_r * math.cos(math.radians(a)), 0.01 + (base_h - 0.01) * math.sin(math.radians(a)))
                                for a in range(15, 91, 15)], 24))
        base_h *= 0.9
    else:  # tripod legs meeting under the stem
        base_h = 0.25 * H
        for k in range(3):
            a = math.radians(90 + 120 * k)
            parts.append(P.capsule((0, 0, base_h), (1.4 * base_r * math.cos(a), 1.4 * base_r * math.sin(a), 0.01),
                                   max(sr, 0.01), 10))
    stem = p["stem"]
    tilt = math.radians(p["shade_tilt_deg"]) if stem != "straight" else 0.0
    if stem == "straight":
        top = (0.0, 0.0, H - 0.02)
        parts.append(P.cylinder((0, 0, base_h - 0.005), top, sr, segments=12))
        hang = top
    elif stem == "arc":
        # a quarter-ish arc rising then bending forward over the front (-Y)
        reach = 0.35 * H
        pts = [(0.0, 0.0, base_h - 0.005), (0.0, 0.0, 0.55 * H)]
        for a in range(10, 91, 16):
            th = math.radians(a)
            pts.append((0.0, -reach * (1 - math.cos(th)), 0.55 * H + 0.42 * H * math.sin(th)))
        parts.append(P.polyline_tube(pts, sr, 10))
        hang = pts[-1]
    elif stem == "desk_arm":
        elbow = (0.0, 0.12 * H, 0.55 * H)
        tip = (0.0, -0.35 * H, 0.85 * H)
        parts.append(P.polyline_tube([(0.0, 0.0, base_h - 0.005), elbow, tip], sr, 10))
        parts.append(Manifold.sphere(2.2 * sr, 12).translate(elbow))
        hang = tip
    else:  # gooseneck: an S-curve
        pts = []
        for i in range(9):
            s = i / 8
            pts.append((0.0, -0.18 * H * math.sin(math.pi * s) * s, base_h - 0.005 + s * (0.9 * H - base_h)))
        pts.append((0.0, pts[-1][1] - 0.06 * H, pts[-1][2] + 0.02 * H))
        parts.append(P.polyline_tube(pts, sr, 10))
        hang = pts[-1]
    shade = _shade(p["shade"], shade_r)
    # a short collar joins the stem tip to the shade
    collar = P.cylinder((0, 0, -0.01), (0, 0, 0.025), max(1.6 * sr, 0.02), segments=12)
    head = P.union([shade.translate((0, 0, 0.005)), collar])
    if tilt:
        head = head.rotate((-math.degrees(tilt), 0.0, 0.0))
    if p["shade"] == "globe" and stem == "straight":
        # a globe sits on top of a straight stem
        head = P.union([Manifold.sphere(shade_r * 0.8, 24).translate((0, 0, 0.75 * shade_r)), collar])
    parts.append(head.translate(hang))
    return P.union(parts)


def captions(p: dict) -> list[str]:
    """Several phrasings describing the lamp's salient attributes."""
    kind = "floor lamp" if p["kind"] == "floor" else "table lamp"
    base = {"disc": "a round base", "square": "a square base", "dome": "a domed base", "tripod": "a tripod base"}[p["base"]]
    stem = {"straight": "a straight stem", "arc": "an arched arm", "desk_arm": "an angled desk arm",
            "gooseneck": "a curved gooseneck"}[p["stem"]]
    shade = {"cone": "a conical shade", "drum": "a drum shade", "dome": "a dome shade", "globe": "a globe shade",
             "bell": "a bell-shaped shade"}[p["shade"]]
    thin = "slender " if p["stem_radius"] < 0.012 else ""
    out = [
        f"{article(kind)} with {shade} on {stem}",
        f"{article(thin + kind)} with {base} and {stem}",
        f"{kind}, {base}, {stem}, {shade}",
        f"{'arc' if p['stem'] == 'arc' else 'desk' if p['stem'] == 'desk_arm' else 'tall' if p['kind'] == 'floor' else 'small'} lamp with {shade}",
    ]
    return tidy(out)
