"""Tables: top shape (rectangular, rounded, round, oval), support (four legs, tapered legs,
pedestal, tripod, trestle, panel ends), apron, lower shelf, and height class
(coffee, dining, bar). Working units are metres; long side along X."""

from __future__ import annotations

import math

from manifold3d import Manifold

from engine.data.captions import article, tidy
from engine.data.shapes import primitives as P

SPACE = {
    "top": ["rectangular", "rounded", "round", "oval"],
    "height_class": ["coffee", "dining", "dining", "bar"],
    "length": (0.7, 1.8),
    "aspect": (0.45, 0.9),
    "top_thickness": (0.025, 0.07),
    "support": ["four_legs", "tapered_legs", "pedestal", "tripod", "trestle", "panel_ends"],
    "leg_thickness": (0.03, 0.08),
    "round_legs": [True, False],
    "apron": [True, False],
    "lower_shelf": [False, False, True],
    "pedestal_foot": ["disc", "cross"],
}

_HEIGHT = {"coffee": 0.42, "dining": 0.74, "bar": 1.02}


def _dims(p: dict) -> tuple[float, float, float]:
    length = p["length"]
    if p["height_class"] == "bar":
        length = min(length, 1.2)
    if p["top"] == "round":
        length = min(length, 1.3)
        return length, length, _HEIGHT[p["height_class"]]
    return length, length * p["aspect"], _HEIGHT[p["height_class"]]


def _leg_corners(p: dict, w: float, d: float, r: float) -> list[tuple[float, float]]:
    if p["top"] in ("round", "oval"):
        # inside the ellipse, on the diagonals
        return [(sx * (w / 2 - r - 0.04) / math.sqrt(2), sy * (d / 2 - r - 0.04) / math.sqrt(2))
                for sx in (-1, 1) for sy in (-1, 1)]
    return [(sx * (w / 2 - r - 0.05), sy * (d / 2 - r - 0.05)) for sx in (-1, 1) for sy in (-1, 1)]


def build(p: dict) -> Manifold:
    """The table solid for parameters ``p``."""
    w, d, h = _dims(p)
    t = p["top_thickness"]
    if p["top"] in ("round", "oval"):
        outline = P.ellipse(w / 2, d / 2, 32)
    else:
        outline = P.rounded_rect(w, d, 0.01 if p["top"] == "rectangular" else 0.2 * d, 4)
    parts = [P.extrude_polygon(outline, t, h - t)]
    r = p["leg_thickness"] / 2
    under = h - t + 0.01
    support = p["support"]
    if p["top"] == "round" and support in ("trestle", "panel_ends"):
        support = "pedestal"
    corners = _leg_corners(p, w, d, r)
    if support in ("four_legs", "tapered_legs"):
        rb = 0.55 * r if support == "tapered_legs" else r
        for x, y in corners:
            if p["round_legs"]:
                parts.append(P.cylinder((x, y, 0.0), (x, y, under), rb, r, 12))
            else:
                parts.append(P.hull([(x + sx * rr, y + sy * rr, z) for rr, z in ((rb, 0.0), (r, under))
                                     for sx in (-1, 1) for sy in (-1, 1)]))
        if p["apron"]:
            (x0, y0), (_, y1), (x1, _), _ = corners
            ah = min(0.1, 0.25 * h)
            parts.append(P.box((x1 - x0, 0.02, ah), (0.0, y0, under - ah / 2)))
            parts.append(P.box((x1 - x0, 0.02, ah), (0.0, y1, under - ah / 2)))
            parts.append(P.box((0.02, y1 - y0, ah), (x0, 0.0, under - ah / 2)))
            parts.append(P.box((0.02, y1 - y0, ah), (x1, 0.0, under - ah / 2)))
        if p["lower_shelf"]:
            (x0, y0), _, _, (x1, y1) = corners
            parts.append(P.box((x1 - x0 + 2 * rb, y1 - y0 + 2 * rb, 0.02), (0.0, 0.0, 0.22 * h)))
    elif support in ("pedestal", "tripod"):
        col_r = max(0.04, 1.3 * r)
        parts.append(P.cylinder((0, 0, 0.02), (0, 0, under), col_r, 0.8 * col_r, 16))
        reach = 0.38 * min(w, d)
        if support == "tripod":
            for k in range(3):
                a = math.radians(90 + 120 * k)
                parts.append(P.capsule((0, 0, 0.25 * h), (reach * math.cos(a), reach * math.sin(a), 0.025), 0.025, 10))
        elif p["pedestal_foot"] == "disc":
            parts.append(P.cylinder((0, 0, 0), (0, 0, 0.04), reach, 0.8 * reach, 28))
        else:
            parts.append(P.box((2 * reach, 0.07, 0.05), (0, 0, 0.025)))
            parts.append(P.box((0.07, 2 * reach, 0.05), (0, 0, 0.025)))
        if p["lower_shelf"]:
            parts.append(P.cylinder((0, 0, 0.3 * h), (0, 0, 0.3 * h + 0.02), 0.3 * min(w, d), segments=24))
    else:  # trestle or panel ends: two supports at the short ends
        x = w / 2 - 0.12
        dd = d
        if p["top"] == "oval":
            # keep the ends under the top where the ellipse narrows
            x = 0.32 * w
            dd = d * math.sqrt(1.0 - (x / (w / 2)) ** 2)
        for sx in (-1, 1):
            if support == "trestle":
                parts.append(P.box((0.06, 0.85 * dd, 0.06), (sx * x, 0.0, 0.03)))
                parts.append(P.box((0.06, 0.08, under), (sx * x, 0.0, under / 2)))
                parts.append(P.box((0.06, 0.7 * dd, 0.05), (sx * x, 0.0, under - 0.025)))
            else:
                parts.append(P.box((0.04, 0.8 * dd, under), (sx * x, 0.0, under / 2)))
        parts.append(P.box((2 * x, 0.05, 0.06), (0.0, 0.0, 0.35 * h)))
        if p["lower_shelf"]:
            parts.append(P.box((2 * x, 0.6 * d, 0.02), (0.0, 0.0, 0.18 * h)))
    return P.union(parts)


def captions(p: dict) -> list[str]:
    """Several phrasings describing the table's salient attributes."""
    w, d, h = _dims(p)
    support = p["support"]
    if p["top"] == "round" and support in ("trestle", "panel_ends"):
        support = "pedestal"
    kind = {"coffee": "coffee table", "dining": "dining table", "bar": "bar table"}[p["height_class"]]
    top = {"rectangular": "rectangular", "rounded": "rounded rectangular", "round": "round", "oval": "oval"}[p["top"]]
    thin = "thin " if p["leg_thickness"] < 0.045 else "thick " if p["leg_thickness"] > 0.065 else ""
    sup = {
        "four_legs": f"four {thin}{'round' if p['round_legs'] else 'square'} legs",
        "tapered_legs": f"four {thin}tapered legs",
        "pedestal": f"a central pedestal on a {'round base' if p['pedestal_foot'] == 'disc' else 'cross-shaped foot'}",
        "tripod": "a pedestal with three feet",
        "trestle": "trestle legs",
        "panel_ends": "two solid panel ends",
    }[support]
    extras = []
    if p["apron"] and support in ("four_legs", "tapered_legs"):
        extras.append("an apron")
    if p["lower_shelf"]:
        extras.append("a lower shelf")
    size = "long " if w > 1.5 else "small " if w < 0.9 else ""
    tail = (" and " + " and ".join(extras)) if extras else ""
    out = [
        f"{article(size + top + ' ' + kind)} with {sup}{tail}",
        f"{article(top + ' table')} on {sup}",
        f"{kind}, {top} top, {sup}" + (", " + ", ".join(extras) if extras else ""),
        f"{article(size + ('low' if p['height_class'] == 'coffee' else 'tall' if p['height_class'] == 'bar' else 'standard-height'))} "
        f"table with {article(('thick ' if p['top_thickness'] > 0.055 else 'thin ' if p['top_thickness'] < 0.035 else '') + top + ' top')}",
    ]
    if support in ("pedestal", "tripod"):
        out.append(f"{top} pedestal table")
    return tidy(out)
