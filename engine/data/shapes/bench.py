"""Benches: seat (solid plank or slats), back (none, slatted, solid), supports (four legs,
slab ends, A-frame ends, cast scroll ends), armrests, length. Working units are metres;
the seat front faces -Y."""

from __future__ import annotations

from manifold3d import Manifold

from engine.data.captions import article, count_word, tidy
from engine.data.shapes import primitives as P

SPACE = {
    "length": (1.0, 2.0),
    "seat_depth": (0.3, 0.5),
    "seat_height": (0.4, 0.48),
    "seat": ["plank", "slats"],
    "seat_slats": (3, 6),
    "back": ["none", "none", "slats", "solid"],
    "back_slats": (2, 4),
    "back_height": (0.25, 0.45),
    "supports": ["four_legs", "slab_ends", "a_frame", "scroll_ends"],
    "armrests": [True, False],
    "center_support": [True, False],
}


def _seat(p: dict, L: float, D: float, h: float) -> list[Manifold]:
    t = 0.04
    if p["seat"] == "plank":
        return [P.box((L, D, t), (0.0, 0.0, h - t / 2))]
    n = int(p["seat_slats"])
    gap = 0.015
    sw = (D - (n - 1) * gap) / n
    parts = [P.box((L, sw, t), (0.0, -D / 2 + sw / 2 + i * (sw + gap), h - t / 2)) for i in range(n)]
    # cross battens underneath tie the slats together into one body
    for x in (-L / 2 + 0.1, L / 2 - 0.1):
        parts.append(P.box((0.05, D, 0.04), (x, 0.0, h - t - 0.015)))
    return parts


def _support(p: dict, x: float, D: float, h: float) -> list[Manifold]:
    under = h - 0.035
    style = p["supports"]
    if style == "slab_ends":
        return [P.box((0.05, 0.9 * D, under), (x, 0.0, under / 2))]
    if style == "a_frame":
        # two legs leaning together under the seat, seen from the side as an A
        return [P.hull([(x + dx, y, z) for dx in (-0.025, 0.025) for y, z in ((-0.48 * D, 0.0), (-0.42 * D, 0.0),
                                                                             (-0.08 * D, under), (0.0, under))]),
                P.hull([(x + dx, y, z) for dx in (-0.025, 0.025) for y, z in ((0.48 * D, 0.0), (0.42 * D, 0.0),
                                                                             (0.08 * D, under), (0.0, under))]),
                P.box((0.05, 0.7 * D, 0.04), (x, 0.0, 0.35 * under))]
    if style == "scroll_ends":
        # a cast-iron style end: curved front leg and back leg joined by a rail
        front = P.polyline_tube([(x, -0.5 * D, 0.02), (x, -0.42 * D, 0.3 * under), (x, -0.4 * D, under)], 0.025, 10)
        back = P.polyline_tube([(x, 0.5 * D, 0.02), (x, 0.42 * D, 0.3 * under), (x, 0.4 * D, under)], 0.025, 10)
        return [front, back, P.cylinder((x, -0.45 * D, 0.25 * under), (x, 0.45 * D, 0.25 * under), 0.018, segments=10)]
    r = 0.025
    return [P.box((2 * r, 2 * r, under + 0.005), (x, y, (under + 0.005) / 2)) for y in (-D / 2 + 0.05, D / 2 - 0.05)]


def build(p: dict) -> Manifold:
    """The bench solid for parameters ``p``."""
    L, D, h = p["length"], p["seat_depth"], p["seat_height"]
    parts = _seat(p, L, D, h)
    xs = [-L / 2 + 0.1, L / 2 - 0.1]
    if p["center_support"] and L > 1.4:
        xs.append(0.0)
    for x in xs:
        parts += _support(p, x, D, h)
    if p["back"] != "none":
        bh = p["back_height"]
        y = D / 2 - 0.02
        posts = [P.box((0.05, 0.04, bh + 0.02), (x, y, h + bh / 2 - 0.01)) for x in xs]
        parts += posts
        if p["back"] == "solid":
            parts.append(P.box((L, 0.03, 0.8 * bh), (0.0, y + 0.03, h + 0.55 * bh)))
        else:
            n = int(p["back_slats"])
            for i in range(n):
                z = h + 0.1 * bh + (i + 0.5) * 0.9 * bh / n
                parts.append(P.box((L, 0.025, 0.6 * 0.9 * bh / n), (0.0, y + 0.03, z)))
    if p["armrests"]:
        for x in (xs[0], xs[1]):
            parts.append(P.box((0.05, 0.04, 0.22), (x, -D / 2 + 0.04, h + 0.1)))
            parts.append(P.box((0.07, D - 0.02, 0.035), (x, 0.0, h + 0.22)))
    return P.union(parts)


def captions(p: dict) -> list[str]:
    """Several phrasings describing the bench's salient attributes."""
    long_ = "long " if p["length"] > 1.6 else "short " if p["length"] < 1.25 else ""
    back = {"none": "backless", "slats": "slatted-back", "solid": "solid-back"}[p["back"]]
    seat = (f"a seat of {count_word(int(p['seat_slats']))} slats" if p["seat"] == "slats" else "a solid plank seat")
    sup = {"four_legs": "square legs",
           "slab_ends": "solid slab ends", "a_frame": "A-frame legs", "scroll_ends": "curved cast-iron style legs"}[p["supports"]]
    arms = "with armrests" if p["armrests"] else "without armrests"
    kind = "park bench" if p["back"] != "none" and p["seat"] == "slats" else "bench"
    out = [
        f"{article(long_ + back + ' ' + kind)} with {sup}",
        f"{article(kind)} with {seat}, {arms}",
        f"{back} {kind} on {sup}, {arms}",
        f"{article(long_ + 'wooden-style bench')} with {seat}" + ("" if p["back"] == "none" else f" and {article(back.replace('-back', '') + ' backrest')}"),
    ]
    return tidy(out)
