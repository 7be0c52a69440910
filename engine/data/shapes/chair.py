"""Chairs: seat shape, leg style (four straight/tapered/splayed, three, pedestal, star base,
sled), back style (solid, vertical slats, horizontal rails, open frame) and top, arms.

Working units are metres; the front of the seat faces -Y, the back rises at +Y.
"""

from __future__ import annotations

import math

from manifold3d import Manifold

from engine.data.captions import article, count_word, tidy
from engine.data.shapes import primitives as P

SPACE = {
    "seat_shape": ["square", "rounded", "round", "wide"],
    "seat_width": (0.40, 0.56),
    "seat_depth": (0.38, 0.52),
    "seat_height": (0.38, 0.52),
    "seat_thickness": (0.03, 0.08),
    "legs": ["four_straight", "four_tapered", "four_splayed", "three", "pedestal", "star_base", "sled"],
    "leg_thickness": (0.025, 0.06),
    "round_legs": [True, False],
    "stretchers": [True, False],
    "back": ["solid", "vertical_slats", "horizontal_rails", "frame"],
    "back_top": ["flat", "arched", "rounded"],
    "back_height": (0.22, 0.62),
    "back_tilt_deg": (0.0, 18.0),
    "slats": (2, 6),
    "arms": ["none", "none", "rail", "panel"],
}


def _seat(p: dict) -> tuple[Manifold, float, float]:
    w, d, t, h = p["seat_width"], p["seat_depth"], p["seat_thickness"], p["seat_height"]
    if p["seat_shape"] == "wide":
        w *= 1.25
    if p["seat_shape"] == "round":
        d = w = max(w, d)
        outline = P.ellipse(w / 2, d / 2, 28)
    elif p["seat_shape"] == "rounded":
        outline = P.rounded_rect(w, d, 0.3 * min(w, d), 4)
    else:
        outline = P.rounded_rect(w, d, 0.01, 1)
    return P.extrude_polygon(outline, t, h - t), w, d


def _leg(a: tuple, b: tuple, r_top: float, r_bottom: float, round_: bool) -> Manifold:
    if round_:
        return P.cylinder(b, a, r_bottom, r_top, 12)
    # square legs: hull of a small square at each end
    pts = [(c[0] + sx * r, c[1] + sy * r, c[2]) for c, r in ((a, r_top), (b, r_bottom))
           for sx in (-1, 1) for sy in (-1, 1)]
    return P.hull(pts)


def _legs(p: dict, w: float, d: float) -> list[Manifold]:
    h = p["seat_height"] - p["seat_thickness"] + 0.01
    r = p["leg_thickness"] / 2
    style = p["legs"]
    parts: list[Manifold] = []
    inset_x = w / 2 - r - 0.02
    inset_y = d / 2 - r - 0.02
    if p["seat_shape"] == "round":
        # corners of a round seat: legs on the diagonals, inside the circle
        inset_x = inset_y = (w / 2 - r - 0.03) / math.sqrt(2)
    if style in ("four_straight", "four_tapered", "four_splayed"):
        splay = 0.06 if style == "four_splayed" else 0.0
        r_bottom = 0.55 * r if style == "four_tapered" else r
        feet = []
        for sx in (-1, 1):
            for sy in (-1, 1):
                top = (sx * inset_x, sy * inset_y, h)
                foot = (sx * (inset_x + splay), sy * (inset_y + splay), 0.0)
                parts.append(_leg(top, foot, r, r_bottom, p["round_legs"]))
                feet.append((top, foot))
        if p["stretchers"]:
            z = 0.35 * h
            at = [(t[0] + (f[0] - t[0]) * (1 - z / h), t[1] + (f[1] - t[1]) * (1 - z / h), z) for t, f in feet]
            # at: (-,-) (-,+) (+,-) (+,+); side stretchers plus one across the front
            rr = 0.45 * r
            parts += [P.cylinder(at[0], at[1], rr, segments=10), P.cylinder(at[2], at[3], rr, segments=10),
                      P.cylinder(at[0], at[2], rr, segments=10)]
    elif style == "three":
        rad = 0.5 * min(w, d) - r - 0.02
        for k in range(3):
            a = math.radians(90 + 120 * k)
            top = (rad * math.cos(a), rad * math.sin(a), h)
            foot = ((rad + 0.05) * math.cos(a), (rad + 0.05) * math.sin(a), 0.0)
            parts.append(_leg(top, foot, r, 0.7 * r, p["round_legs"]))
        if p["stretchers"]:
            # the ring meets the legs where they pass through 30% of the height
            ring = rad + 0.05 * 0.7
            parts.append(P.torus(ring, 0.4 * r, (0.0, 0.0, 0.3 * h), 24, 8))
    elif style == "pedestal":
        parts.append(P.cylinder((0, 0, 0.02), (0, 0, h), 1.4 * r + 0.01, segments=16))
        parts.append(P.cylinder((0, 0, 0.0), (0, 0, 0.035), 0.42 * min(w, d), 0.38 * min(w, d), 24))
    elif style == "star_base":
        parts.append(P.cylinder((0, 0, 0.06), (0, 0, h), 1.2 * r + 0.01, segments=16))
        spoke = 0.5 * max(w, d)
        for k in range(5):
            a = math.radians(-90 + 72 * k)
            end = (spoke * math.cos(a), spoke * math.sin(a), 0.07)
            parts.append(P.capsule((0, 0, 0.09), end, 0.022, 8))
            parts.append(Manifold.sphere(0.035, 10).translate((end[0], end[1], 0.035)))
    elif style == "sled":
        for sx in (-1, 1):
            x = sx * inset_x
            rr = 0.6 * r + 0.006
            parts.append(P.polyline_tube([(x, -inset_y, h), (x, -inset_y - 0.03, rr), (x, inset_y + 0.03, rr),
                                          (x, inset_y, h)], rr, 10))
    return parts


def _half_depth(p: dict, w: float, d: float, x: float) -> float:
    """Half the seat depth at lateral offset ``x`` (shorter towards the sides of a round seat)."""
    if p["seat_shape"] != "round":
        return d / 2
    return math.sqrt(max((w / 2) ** 2 - x * x, 1e-4))


def _back(p: dict, w: float, d: float) -> Manifold:
    bh, style = p["back_height"], p["back"]
    t = 0.028
    bw = 0.92 * w if p["seat_shape"] != "round" else 0.75 * w
    post_r = 0.022
    parts: list[Manifold] = []
    if style == "solid":
        parts.append(P.extrude_front(P.arch_outline(bw, bh, p["back_top"]), t, -t / 2))
    else:
        xs = (-bw / 2 + post_r, bw / 2 - post_r)
        for x in xs:
            parts.append(P.box((2 * post_r, t, bh), (x, 0.0, bh / 2)))
        rail_h = 0.07 if p["back_top"] == "flat" else 0.1
        top = P.arch_outline(bw, rail_h, p["back_top"]) if p["back_top"] != "flat" else None
        if top is not None:
            parts.append(P.extrude_front([(x, z + bh - rail_h) for x, z in top], t, -t / 2))
        else:
            parts.append(P.box((bw, t, rail_h), (0.0, 0.0, bh - rail_h / 2)))
        inner_w = bw - 4 * post_r
        span_lo, span_hi = 0.04, bh - rail_h + 0.005
        n = int(p["slats"])
        if style == "vertical_slats":
            sw = min(0.05, 0.6 * inner_w / n)
            for i in range(n):
                x = -inner_w / 2 + (i + 0.5) * inner_w / n
                parts.append(P.box((sw, 0.6 * t, span_hi - span_lo + 0.01), (x, 0.0, (span_hi + span_lo) / 2)))
        elif style == "horizontal_rails":
            m = max(1, min(n, 4))
            for i in range(m):
                z = span_lo + (i + 0.5) * (span_hi - span_lo) / m
                parts.append(P.box((bw - 2 * post_r, 0.7 * t, 0.035), (0.0, 0.0, z)))
        else:  # frame: a bottom rail closes the rectangle, leaving an open window
            parts.append(P.box((bw - 2 * post_r, t, 0.05), (0.0, 0.0, 0.06)))
    back = P.union(parts)
    back = back.rotate((-p["back_tilt_deg"], 0.0, 0.0))
    return back.translate((0.0, _half_depth(p, w, d, bw / 2) - t / 2 - 0.005, p["seat_height"] - 0.01))


def _arms(p: dict, w: float, d: float) -> list[Manifold]:
    if p["arms"] == "none":
        return []
    h = p["seat_height"]
    arm_h = 0.22
    parts: list[Manifold] = []
    x_abs = w / 2 - 0.025 if p["seat_shape"] != "round" else 0.4 * w
    hd = _half_depth(p, w, d, x_abs + 0.02)
    for sx in (-1, 1):
        x = sx * x_abs
        if p["arms"] == "panel":
            parts.append(P.box((0.04, 1.7 * hd, arm_h + 0.01), (x, 0.0, h + arm_h / 2 - 0.005)))
        else:
            parts.append(P.cylinder((x, -hd + 0.05, h - 0.01), (x, -hd + 0.05, h + arm_h), 0.018, segments=10))
            parts.append(P.capsule((x, -hd + 0.03, h + arm_h), (x, hd - 0.02, h + arm_h + 0.02), 0.025, 10))
    return parts


def build(p: dict) -> Manifold:
    """The chair solid for parameters ``p`` (see SPACE)."""
    seat, w, d = _seat(p)
    return P.union([seat, *_legs(p, w, d), _back(p, w, d), *_arms(p, w, d)])


_LEGS = {
    "four_straight": "four straight legs", "four_tapered": "four tapered legs", "four_splayed": "four splayed legs",
    "three": "three legs", "pedestal": "a pedestal base", "star_base": "a five-star swivel base",
    "sled": "a tubular sled base",
}
_BACK = {"solid": "a solid back", "vertical_slats": "a slatted back", "horizontal_rails": "a rail back",
         "frame": "an open frame back"}


def captions(p: dict) -> list[str]:
    """Several phrasings describing the chair's salient attributes."""
    height = "high-backed" if p["back_height"] > 0.48 else "low-backed" if p["back_height"] < 0.32 else ""
    thin = ""
    if p["legs"].startswith("four") or p["legs"] == "three":
        thin = "thin " if p["leg_thickness"] < 0.035 else "thick " if p["leg_thickness"] > 0.05 else ""
    legs = _LEGS[p["legs"]]
    if thin:
        count, rest = legs.split(" ", 1)
        legs = f"{count} {thin}{rest}"
    back = _BACK[p["back"]]
    if p["back"] == "vertical_slats":
        back = f"a back with {count_word(p['slats'])} vertical slats"
    elif p["back"] == "horizontal_rails":
        back = f"a back with {count_word(max(1, min(p['slats'], 4)))} horizontal rails"
    if p["back_top"] != "flat":
        top = f"{p['back_top']} " + ("top" if p["back"] != "solid" else "")
        back_short = f"{p['back_top']} {_BACK[p['back']].split(' ', 1)[1]}"
    else:
        top = ""
        back_short = _BACK[p["back"]].split(" ", 1)[1]
    arms = {"none": "armless", "rail": "with armrests", "panel": "with solid side arms"}[p["arms"]]
    seat = {"square": "a square seat", "rounded": "a rounded seat", "round": "a round seat",
            "wide": "a wide seat"}[p["seat_shape"]]
    armless = p["arms"] == "none"
    lead = f"{height} chair".strip()
    out = [
        f"{article(lead)} with {legs} and {back}",
        f"{'armless ' if armless else ''}chair with {article(back_short)} and {seat}" + ("" if armless else f", {arms}"),
        f"a chair on {legs}, {back_short}, {arms}",
        f"{article((height + ' ' if height else '') + 'chair')} {arms if not armless else 'without arms'}, {seat}"
        + (f" and {article(top.strip())}" if top.strip() and p['back'] != 'solid' else ""),
    ]
    if p["legs"] in ("star_base", "pedestal"):
        out.append(f"{'office' if p['legs'] == 'star_base' else 'tulip'} chair with {back}")
    return tidy(out)
