"""Cars: body type (sedan, hatchback, SUV, pickup truck, van, coupe) setting the side
profile and cabin placement, length and width, wheel size and hub style, wheel arches,
rear spoiler, roof rack. Working units are metres; the front points to -Y."""

from __future__ import annotations

from manifold3d import Manifold

from engine.data.captions import article, tidy
from engine.data.shapes import primitives as P

SPACE = {
    "body": ["sedan", "hatchback", "suv", "pickup", "van", "coupe"],
    "length_scale": (0.9, 1.1),
    "width_scale": (0.95, 1.05),
    "wheel_scale": (0.9, 1.15),
    "hubcaps": [True, False],
    "spoiler": [False, False, True],
    "roof_rack": [False, False, True],
    "hood_slope": (0.0, 1.0),
}

# nominal length, lower-body height, cabin height, ground clearance, wheel radius,
# cabin bottom (front, rear) and roof (front, rear) as fractions of the length from the centre
_TYPES = {
    "sedan": (4.6, 0.62, 0.6, 0.16, 0.32, (-0.20, 0.30), (-0.06, 0.16)),
    "hatchback": (4.0, 0.62, 0.65, 0.16, 0.31, (-0.18, 0.47), (-0.04, 0.42)),
    "suv": (4.7, 0.75, 0.7, 0.24, 0.38, (-0.18, 0.48), (-0.07, 0.46)),
    "pickup": (5.2, 0.78, 0.7, 0.26, 0.39, (-0.16, 0.08), (-0.06, 0.07)),
    "van": (5.0, 0.8, 1.0, 0.18, 0.34, (-0.36, 0.49), (-0.25, 0.49)),
    "coupe": (4.4, 0.55, 0.48, 0.12, 0.33, (-0.14, 0.28), (-0.0, 0.12)),
}


def build(p: dict) -> Manifold:
    """The car solid for parameters ``p``."""
    L0, hb, hc, c, wr, cab0, roof = _TYPES[p["body"]]
    L = L0 * p["length_scale"]
    W = (1.9 if p["body"] in ("suv", "van", "pickup") else 1.8) * p["width_scale"]
    wr *= p["wheel_scale"]
    c = max(c, 0.45 * wr)
    top = c + hb
    nose = 0.12 + 0.18 * p["hood_slope"]
    # side profile of the lower body: bumpers, sloping hood front, flat bottom
    prof = [(-L / 2, c + 0.08), (-L / 2 + 0.05, c), (L / 2 - 0.05, c), (L / 2, c + 0.08), (L / 2, top - 0.05),
            (L / 2 - 0.06, top), (-L / 2 + 0.5, top), (-L / 2, top - nose * hb)]
    body = P.extrude_side(prof, W, -W / 2)
    axle_f = -L / 2 + 0.2 * L
    axle_r = L / 2 - 0.2 * L
    arches = []
    for y in (axle_f, axle_r):
        for sx in (-1, 1):
            x0 = sx * (W / 2 - 0.28)
            x1 = sx * (W / 2 + 0.1)
            arches.append(P.cylinder((x0, y, wr), (x1, y, wr), wr + 0.05, segments=20))
    body = P.subtract(body, arches)
    parts = [body]
    # cabin: a convex greenhouse narrower at the roof
    cw0, cw1 = W - 0.1, W - 0.35
    cab_pts = []
    for (y0, y1), z, w in ((cab0, top - 0.02, cw0), (roof, top + hc, cw1)):
        for y in (y0 * L, y1 * L):
            for sx in (-1, 1):
                cab_pts.append((sx * w / 2, y, z))
    parts.append(P.hull(cab_pts))
    if p["body"] == "pickup":
        # open cargo bed behind the cab
        bed = P.box((W - 0.16, L / 2 - 0.1 * L - 0.08 - 0.05, hb * 0.8), (0.0, (0.1 * L + 0.08 + L / 2 - 0.05) / 2, top - 0.4 * hb + 0.01))
        parts[0] = P.subtract(parts[0], [bed])
    for y in (axle_f, axle_r):
        for sx in (-1, 1):
            xo = sx * (W / 2 + 0.01)
            xi = sx * (W / 2 - 0.36)
            parts.append(P.cylinder((xi, y, wr), (xo, y, wr), wr, segments=20))
            if p["hubcaps"]:
                parts.append(P.cylinder((xo - sx * 0.01, y, wr), (xo + sx * 0.025, y, wr), 0.55 * wr, 0.45 * wr, 14))
    if p["spoiler"] and p["body"] in ("sedan", "coupe", "hatchback"):
        hatch = p["body"] == "hatchback"
        # a hatchback's spoiler sits on the rear edge of the (narrower) roof
        y_sp = roof[1] * L - 0.1 if hatch else L / 2 - 0.15
        z_sp = top + hc if hatch else top
        for sx in (-1, 1):
            parts.append(P.box((0.05, 0.08, 0.16), (sx * (0.3 if hatch else 0.45) * W, y_sp, z_sp + 0.07)))
        parts.append(P.box((W - 0.1, 0.22, 0.035), (0.0, y_sp + 0.02, z_sp + 0.16)))
    if p["roof_rack"] and p["body"] in ("suv", "van", "hatchback", "pickup"):
        y0, y1 = roof[0] * L + 0.1, roof[1] * L - 0.1
        for sx in (-1, 1):
            parts.append(P.box((0.04, y1 - y0, 0.08), (sx * (cw1 / 2 - 0.1), (y0 + y1) / 2, top + hc + 0.03)))
    return P.union(parts)


def captions(p: dict) -> list[str]:
    """Several phrasings describing the car's salient attributes."""
    body = p["body"]
    name = {"sedan": "sedan", "hatchback": "hatchback", "suv": "SUV", "pickup": "pickup truck", "van": "van",
            "coupe": "sports coupe"}[body]
    long_ = "long " if p["length_scale"] > 1.05 else "compact " if p["length_scale"] < 0.95 else ""
    wheels = "big wheels" if p["wheel_scale"] > 1.07 else "small wheels" if p["wheel_scale"] < 0.95 else "four wheels"
    hub = "hubcaps" if p["hubcaps"] else "plain wheels"
    extras = []
    if p["spoiler"] and body in ("sedan", "coupe", "hatchback"):
        extras.append("a rear spoiler")
    if p["roof_rack"] and body in ("suv", "van", "hatchback", "pickup"):
        extras.append("a roof rack")
    hood = "a sloping hood" if p["hood_slope"] > 0.6 else "a blunt front"
    out = [
        f"{article(long_ + name)} car with {wheels}" + (" and " + " and ".join(extras) if extras else ""),
        f"car, {name} body, {hood}, {hub}",
        f"{article(('low ' if body == 'coupe' else 'tall ' if body in ('van', 'suv') else '') + name)} car"
        + (" with an open cargo bed" if body == "pickup" else " with a boxy cabin" if body == "van" else ""),
        f"{article(name)}-style car with {hood} and {hub}",
    ]
    return tidy(out)
