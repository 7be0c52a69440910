"""Bottles: body section (round, square, flattened flask), shoulder (rounded, sloped, sharp),
waist, neck length and width, lip ring, closure (screw cap, cork, none). Closed solids.
Working units are metres."""

from __future__ import annotations

import math

from manifold3d import Manifold

from engine.data.captions import article, tidy
from engine.data.shapes import primitives as P

SPACE = {
    "section": ["round", "round", "square", "flask"],
    "height": (0.2, 0.35),
    "radius": (0.03, 0.06),
    "body_fraction": (0.45, 0.75),
    "shoulder": ["rounded", "sloped", "sharp"],
    "waist": [False, False, True],
    "neck_radius": (0.25, 0.5),
    "cap": ["screw_cap", "cork", "none"],
    "lip": [True, False],
}


def _neck_profile(p: dict, z0: float, r0: float) -> list[tuple[float, float]]:
    """(radius, z) points of the shoulder, neck and closure, from (r0, z0) up to the axis."""
    H, R = p["height"], p["radius"]
    rn = p["neck_radius"] * R
    zs = p["body_fraction"] * H
    shoulder_h = {"rounded": 0.5, "sloped": 0.8, "sharp": 0.15}[p["shoulder"]] * (H - zs) * 0.6
    zn = zs + shoulder_h
    pts = [(r0, z0)]
    if p["shoulder"] == "rounded":
        for a in range(15, 90, 15):
            t = math.radians(a)
            pts.append((rn + (r0 - rn) * math.cos(t), zs + shoulder_h * math.sin(t)))
    pts.append((rn, zn))
    top = H
    if p["lip"]:
        pts += [(rn, top - 0.02), (rn * 1.18, top - 0.018), (rn * 1.18, top - 0.012), (rn, top - 0.01)]
    if p["cap"] == "screw_cap":
        pts += [(rn * 1.05, top - 0.012 if p["lip"] else top - 0.02), (rn * 1.12, top - 0.011 if p["lip"] else top - 0.019),
                (rn * 1.12, top + 0.012), (0.0, top + 0.012)]
    elif p["cap"] == "cork":
        pts += [(rn, top), (rn * 0.85, top), (rn * 0.9, top + 0.02), (0.0, top + 0.02)]
    else:
        pts += [(rn, top), (0.0, top)]
    return pts


def build(p: dict) -> Manifold:
    """The bottle solid for parameters ``p``."""
    H, R = p["height"], p["radius"]
    zs = p["body_fraction"] * H
    if p["section"] == "square":
        body = P.extrude_polygon(P.rounded_rect(2 * R, 2 * R, 0.25 * R, 3), zs, 0.0)
        neck = P.revolve(P.dedupe([(0.0, zs - 0.005), *_neck_profile(p, zs - 0.005, 0.98 * R)]), 24)
        return P.union([body, neck])
    prof = [(0.0, 0.0), (0.92 * R, 0.0), (R, 0.008)]
    if p["waist"]:
        for s in (0.3, 0.5, 0.7):
            prof.append((R * (1.0 - 0.22 * math.sin(math.pi * (s - 0.2) / 0.6)), s * zs))
    prof.append((R, zs))
    prof += _neck_profile(p, zs, R)[1:]
    solid = P.revolve(P.dedupe(prof), 28)
    if p["section"] == "flask":
        solid = solid.scale((1.0, 0.5, 1.0))
    return solid


def captions(p: dict) -> list[str]:
    """Several phrasings describing the bottle's salient attributes."""
    section = {"round": "round", "square": "square", "flask": "flat flask-shaped"}[p["section"]]
    neck_len = (1 - p["body_fraction"]) * p["height"]
    neck = "a long neck" if neck_len > 0.1 else "a short neck"
    neck_w = "narrow" if p["neck_radius"] < 0.35 else "wide"
    cap = {"screw_cap": "a screw cap", "cork": "a cork", "none": "an open mouth"}[p["cap"]]
    shoulder = {"rounded": "rounded shoulders", "sloped": "sloping shoulders", "sharp": "square shoulders"}[p["shoulder"]]
    slim = "slim" if p["height"] / p["radius"] > 6.5 else "stout" if p["height"] / p["radius"] < 4.5 else ""
    out = [
        f"{article((slim + ' ' + section + ' bottle').strip())} with {neck} and {cap}",
        f"{article(section + ' bottle')} with {shoulder} and {article(neck_w + ' neck')}",
        f"bottle, {section} body, {shoulder}, {cap}" + (", pinched waist" if p["waist"] and p["section"] != "square" else ""),
        f"{'wine' if p['cap'] == 'cork' else 'water' if p['cap'] == 'screw_cap' else 'glass'} bottle with {neck}",
    ]
    return tidy(out)
