#!/usr/bin/env python3
"""Dataset speed: procedural generation alone, and `dataset build` shapes per second.

Prints one JSON object:

- ``generate_s_per_shape``: mean seconds of ``generate_shape`` over every category;
- ``build``: one entry per configuration (with renders / without, ``--workers``), each
  with the number of shapes, wall seconds (worker start-up included), shapes/second, and
  CPU seconds per shape (this process and its workers: less sensitive to other load on
  a shared machine than wall time).

Example: ``.venv/bin/python scripts/bench_dataset.py --per-category 3 --workers 2``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.data.dataset import BuildSettings, build_dataset, procedural_tasks  # noqa: E402
from engine.data.procedural import CATEGORIES, generate_shape, split_seeds  # noqa: E402


def _cpu_seconds() -> float:
    """User + system CPU time of this process and of its finished children (pool workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-category", type=int, default=3, help="shapes per category in each build")
    ap.add_argument("--generate", type=int, default=20, help="shapes per category for the generator timing")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--grid-res", type=int, default=32)
    ap.add_argument("--render-size", type=int, default=128)
    ap.add_argument("--views", type=int, default=16, help="renders per shape (half fixed, half random)")
    args = ap.parse_args()

    t = time.perf_counter()
    n = 0
    faces = 0
    for c in CATEGORIES:
        for s in split_seeds("train", args.generate):
            faces += len(generate_shape(c, s).mesh.faces)
            n += 1
    gen = (time.perf_counter() - t) / n

    runs = []
    configs = [("renders", True), ("no_renders", False)]
    for name, renders in configs:
        settings = BuildSettings(grid_res=args.grid_res, renders=renders, render_size=args.render_size,
                                 fixed_views=args.views // 2, random_views=args.views - args.views // 2)
        tasks = procedural_tasks("val", CATEGORIES, args.per_category)
        with tempfile.TemporaryDirectory() as tmp:
            cpu0 = _cpu_seconds()
            t = time.perf_counter()
            report = build_dataset(tmp, tasks, settings, workers=args.workers, progress=False)
            wall = time.perf_counter() - t
            cpu = _cpu_seconds() - cpu0
        runs.append({"config": name, "workers": args.workers, "shapes": report.built, "skipped": len(report.skipped),
                     "wall_s": round(wall, 2), "shapes_per_s": round(report.built / wall, 3),
                     "cpu_s_per_shape": round(cpu / max(report.built, 1), 3),
                     "settings": settings.to_json()})
    print(json.dumps({"machine": f"{os.cpu_count()}-core CPU ({platform.machine()})",
                      "categories": len(CATEGORIES), "generate_s_per_shape": round(gen, 4),
                      "mean_faces": round(faces / n), "build": runs}, indent=1))


if __name__ == "__main__":
    main()
