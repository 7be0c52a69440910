"""Benchmark render_mesh on this machine; prints one JSON object.

Renders procedural shapes (or a torus when the procedural generator is not importable)
from orbits of cameras at 256×256 and reports images per second and the projected time
of a 10,000-image dataset.

Usage: python scripts/bench_render.py [--backend cpu] [--size 256] [--shapes 6] [--views 24] [--supersample 1]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time

import numpy as np
import trimesh

from engine.render.cameras import orbit_cameras
from engine.render.renderer import render_mesh, resolve_backend


def shapes(n: int) -> list[tuple[str, trimesh.Trimesh]]:
    try:
        from engine.data.procedural import CATEGORIES, generate_shape
    except ImportError:
        return [("torus", trimesh.creation.torus(0.6, 0.25))] * n
    return [(c, generate_shape(c, 0).mesh) for c in (CATEGORIES * n)[:n]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="cpu", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--shapes", type=int, default=6)
    ap.add_argument("--views", type=int, default=24)
    ap.add_argument("--supersample", type=int, default=1)
    args = ap.parse_args()
    backend = resolve_backend(args.backend)
    cams = orbit_cameras(args.views, polar=math.radians(60), radius=3.5)
    meshes = shapes(args.shapes)
    render_mesh(meshes[0][1].vertices, meshes[0][1].faces, cams[:1], size=args.size, backend=backend)  # warm-up
    per_shape, coverage, faces = [], [], []
    t_all = time.perf_counter()
    for _, mesh in meshes:
        t0 = time.perf_counter()
        out = render_mesh(mesh.vertices, mesh.faces, cams, size=args.size, backend=backend,
                          supersample=args.supersample)
        per_shape.append(time.perf_counter() - t0)
        coverage.append(float(out["mask"].mean()))
        faces.append(len(mesh.faces))
    total = time.perf_counter() - t_all
    images = args.views * len(meshes)
    ips = images / total
    machine = f"{os.cpu_count()}-core CPU ({platform.machine()})"
    if backend == "cuda":  # rasterization on the GPU; shading (numpy) still on the CPU
        import torch
        machine += f"; rasterization on {torch.cuda.get_device_name()}"
    print(json.dumps({
        "machine": machine,
        "backend": backend,
        "size": args.size,
        "supersample": args.supersample,
        "shapes": [name for name, _ in meshes],
        "faces_per_shape": faces,
        "views_per_shape": args.views,
        "images": images,
        "seconds": round(total, 3),
        "images_per_s": round(ips, 2),
        "seconds_per_shape": [round(t, 3) for t in per_shape],
        "mean_foreground_fraction": round(float(np.mean(coverage)), 3),
        "projected_hours_10k_images": round(10_000 / ips / 3600, 3),
    }, indent=1))


if __name__ == "__main__":
    main()
