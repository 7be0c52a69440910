"""Airplanes: fuselage proportions, wing planform (straight, swept, delta) and sweep angle,
span, taper, dihedral, wing position (low, mid, high), engines (none, propeller nose,
two or four under-wing nacelles, two rear-mounted), tail (conventional, T-tail, twin fins,
V-tail). Working units are metres; the nose points to -Y."""

from __future__ import annotations

import math

from manifold3d import Manifold

from engine.data.captions import article, tidy
from engine.data.shapes import primitives as P

SPACE = {
    "length": (0.8, 1.2),
    "fuselage_radius": (0.045, 0.08),
    "wing": ["straight", "swept", "swept", "delta"],
    "sweep_deg": (15.0, 40.0),
    "span": (0.7, 1.3),
    "taper": (0.3, 0.8),
    "dihedral_deg": (-3.0, 8.0),
    "wing_position": ["low", "low", "mid", "high"],
    "engines": ["none", "propeller", "two_wing", "two_wing", "four_wing", "two_rear"],
    "tail": ["conventional", "conventional", "t_tail", "twin", "v_tail"],
}


def _fuselage(L: float, r: float) -> Manifold:
    """Body of revolution along Y, nose at -Y: rounded nose, straight cabin, tapering tail."""
    prof = [(0.0, 0.0)]
    for a in range(15, 91, 15):
        t = math.radians(a)
        prof.append((r * math.sin(t), 0.16 * L * (1 - math.cos(t))))
    prof += [(r, 0.65 * L), (0.35 * r, 0.98 * L), (0.25 * r, L), (0.0, L)]
    body = P.revolve(prof, 20)  # along +Z from 0 to L
    # lay it along Y with the nose at -Y: z -> y, then centre
    return body.rotate((-90.0, 0.0, 0.0)).translate((0.0, -L / 2, 0.0))


def _wing_half(root_y: float, root_chord: float, span: float, sweep_deg: float, taper: float, thick: float,
               dihedral_deg: float, z: float, side: int) -> Manifold:
    """One wing (side=+1 right, -1 left) as a convex hull of thin root and tip sections."""
    tip_chord = root_chord * taper
    tip_y = root_y + span * math.tan(math.radians(sweep_deg))
    tip_z = z + span * math.tan(math.radians(dihedral_deg))
    pts = []
    for x, y0, c, zz, th in ((0.0, root_y, root_chord, z, thick), (side * span, tip_y, tip_chord, tip_z, 0.5 * thick)):
        for y in (y0, y0 + c):
            for dz in (-th / 2, th / 2):
                pts.append((x, y, zz + dz))
        # a thicker point at a third of the chord gives an airfoil-like section
        pts.append((x, y0 + 0.3 * c, zz + 0.9 * th))
        pts.append((x, y0 + 0.3 * c, zz - 0.6 * th))
    return P.hull(pts)


def build(p: dict) -> Manifold:
    """The airplane solid for parameters ``p``."""
    L, r = p["length"], p["fuselage_radius"]
    parts = [_fuselage(L, r)]
    wz = {"low": -0.6 * r, "mid": 0.0, "high": 0.65 * r}[p["wing_position"]]
    half = p["span"] / 2
    wing = p["wing"]
    if wing == "delta":
        root_chord, sweep, taper, root_y = 0.55 * L, 55.0, 0.12, -0.1 * L
    elif wing == "straight":
        root_chord, sweep, taper, root_y = 0.2 * L, 2.0, p["taper"], -0.15 * L
    else:
        root_chord, sweep, taper, root_y = 0.22 * L, p["sweep_deg"], p["taper"], -0.18 * L
    thick = 0.035 * root_chord / 0.2 * (0.6 if wing == "delta" else 1.0)
    for side in (-1, 1):
        parts.append(_wing_half(root_y, root_chord, half, sweep, taper, thick, p["dihedral_deg"], wz, side))
    # engines
    eng = p["engines"]
    nac_r = 0.55 * r
    if eng in ("two_wing", "four_wing"):
        spots = [0.35] if eng == "two_wing" else [0.28, 0.55]
        for f in spots:
            for side in (-1, 1):
                x = side * f * half
                y_le = root_y + f * half * math.tan(math.radians(sweep))
                zw = wz + f * half * math.tan(math.radians(p["dihedral_deg"]))
                zc = zw - 1.6 * nac_r
                parts.append(P.cylinder((x, y_le - 0.6 * nac_r * 2, zc), (x, y_le + 0.12 * L, zc), nac_r, 0.8 * nac_r, 14))
                parts.append(P.box((0.25 * nac_r, 0.1 * L, 1.6 * nac_r), (x, y_le + 0.05 * L, zw - 0.8 * nac_r)))
    elif eng == "two_rear":
        for side in (-1, 1):
            x = side * (r + 0.8 * nac_r)
            parts.append(P.cylinder((x, 0.2 * L, 0.5 * r), (x, 0.36 * L, 0.5 * r), nac_r, 0.85 * nac_r, 14))
            parts.append(P.box((1.2 * nac_r + 0.5 * r, 0.08 * L, 0.3 * nac_r), (side * (r * 0.5 + 0.6 * nac_r), 0.28 * L, 0.5 * r)))
    elif eng == "propeller":
        parts.append(P.cylinder((0, -L / 2 + 0.01, 0), (0, -L / 2 - 0.03, 0), 0.3 * r, 0.05 * r, 12))
        parts.append(P.box((1.6 * 2 * r, 0.012, 0.12 * r), (0, -L / 2 - 0.012, 0)))
    # tail surfaces
    tail = p["tail"]
    ty = 0.33 * L
    fin_h = 2.2 * r + 0.04
    chord = 0.12 * L
    tail_span = 0.16 * p["span"] + 0.05
    def fin(x: float, lean_deg: float = 0.0) -> Manifold:
        top_y = ty + chord * 0.9
        pts = [(x + dx, y, z) for dx in (-0.006, 0.006) for y, z in ((ty - chord * 0.2, 0.3 * r), (ty + chord, 0.3 * r),
                                                                     (top_y + 0.45 * chord, fin_h), (top_y, fin_h))]
        solid = P.hull(pts)
        if lean_deg:
            solid = solid.translate((-x, 0, 0)).rotate((0.0, lean_deg, 0.0)).translate((x, 0, 0))
        return solid
    def stab(z: float, y0: float, span: float) -> list[Manifold]:
        return [_wing_half(y0, 0.7 * chord, span, 25.0 if wing != "straight" else 5.0, 0.55, 0.012, 0.0, z, s)
                for s in (-1, 1)]
    if tail == "conventional":
        parts += [fin(0.0)] + stab(0.2 * r, ty + 0.15 * chord, tail_span)
    elif tail == "t_tail":
        parts += [fin(0.0)] + stab(fin_h - 0.008, ty + 0.9 * chord + 0.1 * chord, 0.8 * tail_span)
    elif tail == "twin":
        y0 = ty + 0.15 * chord
        parts += stab(0.2 * r, y0, tail_span)
        tipx = 0.75 * tail_span
        # the fins stand on the stabiliser where it passes x = tipx (swept, tapered)
        sweep_t = 25.0 if wing != "straight" else 5.0
        y_le = y0 + tipx * math.tan(math.radians(sweep_t))
        c_loc = 0.7 * chord * (1.0 - 0.45 * tipx / tail_span)
        for s in (-1, 1):
            parts.append(P.hull([(s * tipx + dx, y, z) for dx in (-0.006, 0.006)
                                 for y, z in ((y_le + 0.1 * c_loc, 0.2 * r - 0.004), (y_le + 0.9 * c_loc, 0.2 * r - 0.004),
                                              (y_le + 1.1 * c_loc, 0.2 * r + 0.7 * fin_h),
                                              (y_le + 0.5 * c_loc, 0.2 * r + 0.7 * fin_h))]))
    else:  # v_tail: two fins leaning outwards, no horizontal stabiliser
        parts += [fin(0.0, -35.0), fin(0.0, 35.0)]
    return P.union(parts)


def captions(p: dict) -> list[str]:
    """Several phrasings describing the airplane's salient attributes."""
    wing = {"straight": "straight wings", "swept": "swept-back wings", "delta": "delta wings"}[p["wing"]]
    if p["wing"] == "swept" and p["sweep_deg"] > 32:
        wing = "sharply swept wings"
    eng = {"none": "no visible engines", "propeller": "a nose propeller", "two_wing": "two engines under the wings",
           "four_wing": "four engines under the wings", "two_rear": "two rear-mounted engines"}[p["engines"]]
    tail = {"conventional": "a conventional tail", "t_tail": "a T-tail", "twin": "twin tail fins", "v_tail": "a V-tail"}[p["tail"]]
    pos = {"low": "low-wing", "mid": "mid-wing", "high": "high-wing"}[p["wing_position"]]
    kind = ("jet airliner" if p["engines"] in ("two_wing", "four_wing") and p["wing"] == "swept"
            else "propeller" if p["engines"] == "propeller" else "delta-wing jet" if p["wing"] == "delta"
            else "business jet" if p["engines"] == "two_rear" else "glider-like" if p["engines"] == "none" else "twin-engine")
    out = [
        f"{article(pos + ' airplane')} with {wing} and {eng}",
        f"airplane, {wing}, {tail}, {eng}",
        f"{article(kind + ' airplane')} with {tail}",
        f"{article(('slender' if p['fuselage_radius'] < 0.055 else 'wide-body') + ' airplane')} with {wing}"
        + (" and a long wingspan" if p["span"] > 1.1 else ""),
    ]
    return tidy(out)
