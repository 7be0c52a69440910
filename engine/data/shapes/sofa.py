"""Sofas: seat count (armchair to four-seater), arm style (none, box, rolled, slim, flared),
back height and cushions, base (short legs, tall legs, plinth), optional chaise (L shape).
Working units are metres; the seat front faces -Y."""

from __future__ import annotations

from manifold3d import Manifold

from engine.data.captions import article, count_word, tidy
from engine.data.shapes import primitives as P

SPACE = {
    "seats": (1, 4),
    "seat_width": (0.5, 0.7),
    "depth": (0.8, 1.0),
    "seat_height": (0.38, 0.48),
    "back_height": (0.25, 0.45),
    "arms": ["box", "rolled", "slim", "flared", "none"],
    "arm_height": (0.15, 0.28),
    "back_cushions": [True, False],
    "seat_cushions": [True, False],
    "base": ["short_legs", "tall_legs", "plinth"],
    "chaise": [False, False, True],
    "roundness": (0.01, 0.06),
}


def build(p: dict) -> Manifold:
    """The sofa solid for parameters ``p``."""
    n = int(p["seats"])
    W = n * p["seat_width"]
    D = p["depth"]
    sh = p["seat_height"]
    rnd = p["roundness"]
    leg_h = {"short_legs": 0.08, "tall_legs": 0.2, "plinth": 0.0}[p["base"]]
    base_top = sh - (0.12 if p["seat_cushions"] else 0.0)
    frame_h = base_top - leg_h
    back_t = 0.18
    arm_w = {"box": 0.16, "rolled": 0.18, "slim": 0.07, "flared": 0.14, "none": 0.0}[p["arms"]]
    total_w = W + 2 * arm_w
    parts = [P.rounded_box((total_w, D, frame_h + 0.01), rnd, (0.0, 0.0, leg_h + frame_h / 2 - 0.005))]
    chaise_len = 0.0
    if p["chaise"] and n >= 2:
        chaise_len = 0.6
        parts.append(P.rounded_box((p["seat_width"] + arm_w, D + chaise_len, frame_h + 0.01), rnd,
                                   (W / 2 - p["seat_width"] / 2 + arm_w / 2, -chaise_len / 2, leg_h + frame_h / 2 - 0.005)))
    # back
    back_top = sh + p["back_height"]
    parts.append(P.rounded_box((W + 2 * arm_w - 0.01, back_t, back_top - leg_h), rnd,
                               (0.0, D / 2 - back_t / 2, leg_h + (back_top - leg_h) / 2)))
    if p["seat_cushions"]:
        cw = W / n
        for i in range(n):
            x = -W / 2 + (i + 0.5) * cw
            depth = D - back_t + 0.01
            y = -D / 2 + depth / 2
            if p["chaise"] and n >= 2 and i == n - 1:
                depth += chaise_len
                y -= chaise_len / 2
            parts.append(P.rounded_box((cw - 0.015, depth - 0.02, 0.13), 0.04, (x, y, base_top + 0.055)))
    if p["back_cushions"]:
        cw = W / n
        ch = max(0.2, p["back_height"] - 0.04)
        for i in range(n):
            x = -W / 2 + (i + 0.5) * cw
            parts.append(P.rounded_box((cw - 0.02, 0.16, ch), 0.05,
                                       (x, D / 2 - back_t - 0.06, sh + ch / 2 - 0.02)))
    # arms
    if p["arms"] != "none":
        ah = sh + p["arm_height"]
        for sx in (-1, 1):
            x = sx * (W / 2 + arm_w / 2)
            if p["arms"] == "rolled":
                parts.append(P.box((arm_w, D - 0.02, ah - leg_h - 0.08), (x, 0.0, leg_h + (ah - leg_h - 0.08) / 2)))
                parts.append(P.cylinder((x, -D / 2 - 0.02, ah - 0.08), (x, D / 2 - 0.01, ah - 0.08), arm_w * 0.62, segments=16))
            elif p["arms"] == "flared":
                y0, y1 = -D / 2, D / 2 - 0.02
                pts = []
                for y in (y0, y1):
                    for zz, half in ((leg_h, 0.5 * arm_w), (ah, 0.75 * arm_w)):
                        for s2 in (-1, 1):
                            pts.append((x + s2 * half + sx * (0.25 * arm_w if zz == ah else 0.0), y, zz))
                parts.append(P.hull(pts))
            else:
                parts.append(P.rounded_box((arm_w, D, ah - leg_h), min(rnd, arm_w / 3),
                                           (x, 0.0, leg_h + (ah - leg_h) / 2)))
    # legs
    if p["base"] != "plinth":
        r = 0.025 if p["base"] == "short_legs" else 0.018
        xs = (-total_w / 2 + 0.08, total_w / 2 - 0.08)
        ys = [(-D / 2 + 0.08), (D / 2 - 0.08)]
        spots = [(x, y) for x in xs for y in ys]
        if n >= 3:
            spots += [(0.0, y) for y in ys]
        if p["chaise"] and n >= 2:
            spots.append((W / 2 - p["seat_width"] / 2 + arm_w / 2, -D / 2 - chaise_len + 0.08))
        for x, y in spots:
            rb = r * (0.6 if p["base"] == "tall_legs" else 1.0)
            parts.append(P.cylinder((x, y, 0.0), (x, y, leg_h + 0.02), rb, r, 10))
    return P.union(parts)


def captions(p: dict) -> list[str]:
    """Several phrasings describing the sofa's salient attributes."""
    n = int(p["seats"])
    kind = "single-seat armchair sofa" if n == 1 else "loveseat sofa" if n == 2 and not p["chaise"] else "sofa"
    if p["chaise"] and n >= 2:
        kind = "sectional sofa with a chaise"
    arms = {"box": "square box arms", "rolled": "rolled arms", "slim": "slim track arms", "flared": "flared arms",
            "none": "no arms"}[p["arms"]]
    back = "high back" if p["back_height"] > 0.39 else "low back" if p["back_height"] < 0.31 else "medium-height back"
    base = {"short_legs": "short legs", "tall_legs": "tall thin legs", "plinth": "a solid plinth base"}[p["base"]]
    cushions = []
    if p["seat_cushions"]:
        cushions.append(f"{count_word(n)} seat cushion{'s' if n > 1 else ''}")
    if p["back_cushions"]:
        cushions.append("loose back cushions")
    seater = f"{count_word(n)}-seat"
    out = [
        f"{article(seater + ' ' + kind)} with {arms} and {article(back)}",
        f"{article(kind)} on {base} with {arms}",
        f"{'armless ' if p['arms'] == 'none' else ''}{kind}, {seater}, {back}, {base}",
        f"{article('sofa' if n > 1 else 'armchair-style sofa')} with " + (", ".join(cushions) if cushions else "a tight upholstered seat and back"),
    ]
    return tidy(out)
