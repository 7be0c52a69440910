"""Shelves: bookcase with panel sides or an open frame on four posts, shelf count, columns
(vertical dividers), back panel, base (plinth, feet, none), optional closed cabinet at the
bottom, proportions from a low wide unit to a tall narrow tower. Working units are metres;
the open side faces -Y."""

from __future__ import annotations

from manifold3d import Manifold

from engine.data.captions import article, count_word, tidy
from engine.data.shapes import primitives as P

SPACE = {
    "height": (0.7, 2.0),
    "width": (0.5, 1.6),
    "depth": (0.25, 0.45),
    "sides": ["panels", "panels", "posts"],
    "shelves": (2, 6),
    "columns": (1, 3),
    "back_panel": [True, False],
    "base": ["plinth", "feet", "none"],
    "cabinet": [False, False, True],
    "board": (0.018, 0.035),
}


def build(p: dict) -> Manifold:
    """The shelf solid for parameters ``p``."""
    H, W, D, t = p["height"], p["width"], p["depth"], p["board"]
    n = int(p["shelves"])
    cols = int(p["columns"]) if W > 0.75 else 1
    parts: list[Manifold] = []
    z0 = {"plinth": 0.08, "feet": 0.1, "none": 0.0}[p["base"]]
    if p["sides"] == "panels":
        for sx in (-1, 1):
            parts.append(P.box((t, D, H - z0 + (0.0 if z0 else 0.0)), (sx * (W / 2 - t / 2), 0.0, z0 + (H - z0) / 2)))
        if p["base"] == "plinth":
            parts.append(P.box((W - 0.02, D - 0.03, z0 + 0.01), (0.0, -0.005, (z0 + 0.01) / 2)))
    else:
        r = 0.02
        for sx in (-1, 1):
            for sy in (-1, 1):
                parts.append(P.box((2 * r, 2 * r, H), (sx * (W / 2 - r), sy * (D / 2 - r), H / 2)))
        z0 = 0.06 if p["base"] != "none" else 0.02
        # cross braces on the sides keep a post frame rigid (and visually distinct)
        for sx in (-1, 1):
            parts.append(P.capsule((sx * (W / 2 - 0.02), -D / 2 + 0.02, z0), (sx * (W / 2 - 0.02), D / 2 - 0.02, H - 0.04),
                                   0.008, 8))
    if p["base"] == "feet" and p["sides"] == "panels":
        for sx in (-1, 1):
            for sy in (-1, 1):
                parts.append(P.cylinder((sx * (W / 2 - 0.04), sy * (D / 2 - 0.04), 0.0),
                                        (sx * (W / 2 - 0.04), sy * (D / 2 - 0.04), z0 + 0.01), 0.02, 0.025, 10))
        parts.append(P.box((W - 0.02, D, t), (0.0, 0.0, z0 + t / 2)))
    # shelves evenly spaced from the bottom board to the top board
    levels = [z0 + t / 2 + i * (H - z0 - t) / n for i in range(n + 1)]
    inner_w = W - (0.0 if p["sides"] == "posts" else t)
    for z in levels:
        parts.append(P.box((inner_w, D - (0.0 if p["sides"] == "posts" else 0.005), t), (0.0, 0.0, z)))
    for c in range(1, cols):
        x = -W / 2 + c * W / cols
        parts.append(P.box((t, D - 0.01, H - z0 - t), (x, 0.0, z0 + (H - z0) / 2)))
    if p["back_panel"]:
        parts.append(P.box((W - 0.002, 0.008, H - z0), (0.0, D / 2 - 0.004, z0 + (H - z0) / 2)))
    if p["cabinet"] and n >= 3:
        # the closed bottom compartment is filled solid: a door slab in front of a back panel
        # would enclose a hidden cavity, which surface sampling and SDFs must not see
        zc0, zc1 = levels[0], levels[1]
        parts.append(P.box((W - 0.004, D - 0.004, zc1 - zc0 + 0.5 * t), (0.0, 0.0, (zc0 + zc1) / 2)))
        parts.append(P.box((0.02, 0.02, 0.08), (-0.03, -D / 2 - 0.005, (zc0 + zc1) / 2 + 0.05)))
        parts.append(P.box((0.02, 0.02, 0.08), (0.03, -D / 2 - 0.005, (zc0 + zc1) / 2 + 0.05)))
    return P.union(parts)


def captions(p: dict) -> list[str]:
    """Several phrasings describing the shelf's salient attributes."""
    H, W = p["height"], p["width"]
    n = int(p["shelves"])
    cols = int(p["columns"]) if W > 0.75 else 1
    form = "tall narrow" if H > 1.5 and W < 0.9 else "low wide" if H < 1.0 and W > 1.0 else "tall" if H > 1.5 else "low" if H < 1.0 else ""
    kind = "bookcase shelf" if p["sides"] == "panels" else "open frame shelf"
    levels = f"{count_word(n)} compartments high"
    back = "with a back panel" if p["back_panel"] else "open at the back"
    cols_txt = f"{count_word(cols)} columns" if cols > 1 else "a single column"
    out = [
        f"{article((form + ' ' + kind).strip())} with {count_word(n + 1)} shelf boards, {back}",
        f"{article(kind)}, {levels}, {cols_txt}",
        f"{'metal-frame shelf unit' if p['sides'] == 'posts' else 'wooden-style bookshelf'} with {cols_txt} and "
        f"{'a closed cabinet at the bottom' if p['cabinet'] and n >= 3 else 'open shelves'}",
        f"shelf on {'a plinth' if p['base'] == 'plinth' else 'short feet' if p['base'] == 'feet' else 'the floor'}, {back}",
    ]
    return tidy(out)
