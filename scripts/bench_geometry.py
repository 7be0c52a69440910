"""Benchmark the geometry core on this machine (CPU, or CUDA for marching tets); prints one JSON object.

- marching tetrahedra at R=64 (1.57M tets): a sphere SDF, batch 1 and batch 4;
- mesh_sdf of a 100,000-face mesh at the R=64 grid vertices (274,625 points), with the
  split between exact unsigned distance and the fast winding-number sign.

With ``--device cuda`` the grid and SDFs move to the GPU and marching tets runs there
(timed after a warm-up, synchronized); ``mesh_sdf`` (libigl) always runs on the CPU, and
``--no-sdf`` skips it.

Usage: python scripts/bench_geometry.py [--resolution 64] [--repeats 3] [--compare-trimesh]
    [--device cpu|cuda] [--no-sdf]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch
import trimesh

from engine.geometry.marching_tets import marching_tetrahedra
from engine.geometry.sdf import mesh_sdf, winding_number
from engine.geometry.tetgrid import make_tet_grid


def best_of(fn, repeats: int, device: str = "cpu") -> tuple[float, object]:
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times, out = [], None
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--compare-trimesh", action="store_true",
                    help="also time trimesh.proximity.closest_point on 2,000 of the points (slow)")
    ap.add_argument("--device", default="cpu", help="where marching tets runs: cpu or cuda")
    ap.add_argument("--no-sdf", action="store_true", help="skip the mesh_sdf part")
    args = ap.parse_args()
    r, dev = args.resolution, args.device

    t_grid, (verts, tets) = best_of(lambda: make_tet_grid(r), args.repeats)
    radii = torch.tensor([0.5, 0.6, 0.7, 0.8])[:, None]
    sdf4 = verts.norm(dim=-1)[None] - radii  # 4 spheres
    v_d, t_d, s_d = verts.to(dev), tets.to(dev), sdf4.to(dev)
    if dev != "cpu":
        marching_tetrahedra(v_d, t_d, s_d)  # warm-up (CUDA context, kernels)
    t_mt1, out1 = best_of(lambda: marching_tetrahedra(v_d, t_d, s_d[0]), args.repeats, dev)
    t_mt4, out4 = best_of(lambda: marching_tetrahedra(v_d, t_d, s_d), args.repeats, dev)
    machine = f"{os.cpu_count()}-core CPU ({platform.machine()}), torch threads {torch.get_num_threads()}"
    if dev.startswith("cuda"):
        machine += f"; marching tets on {torch.cuda.get_device_name(torch.device(dev))}"
    result = {
        "machine": machine,
        "device": dev,
        "resolution": r,
        "grid": {"vertices": int(verts.shape[0]), "tets": int(tets.shape[0]), "build_s": round(t_grid, 4)},
        "marching_tets_sphere_b1": {"seconds": round(t_mt1, 4), "vertices": int(out1[0][0].shape[0]),
                                    "faces": int(out1[0][1].shape[0])},
        "marching_tets_sphere_b4": {"seconds": round(t_mt4, 4),
                                    "faces": [int(f.shape[0]) for _, f in out4]},
    }
    if args.no_sdf:
        print(json.dumps(result, indent=1))
        return

    # 100,000-face closed mesh (a torus, 250 × 200 quads) inside the cube
    mesh = trimesh.creation.torus(major_radius=0.6, minor_radius=0.25, major_sections=250, minor_sections=200)
    points = verts.numpy()
    t_sdf, sdf = best_of(lambda: mesh_sdf(mesh.vertices, mesh.faces, points), 1)
    t_wn, _ = best_of(lambda: winding_number(mesh.vertices, mesh.faces, points), 1)
    ring = np.sqrt(points[:, 0] ** 2 + points[:, 1] ** 2) - 0.6
    exact = np.sqrt(ring ** 2 + points[:, 2] ** 2) - 0.25

    extra = {}
    if args.compare_trimesh:
        sub = points[:: len(points) // 2000][:2000].astype(np.float64)
        t0 = time.perf_counter()
        trimesh.proximity.closest_point(mesh, sub)
        t_tm = time.perf_counter() - t0
        extra["trimesh_proximity"] = {"points": len(sub), "seconds": round(t_tm, 3),
                                      "projected_s_for_all_points": round(t_tm / len(sub) * len(points), 1)}

    print(json.dumps({
        **result,
        "mesh_sdf": {"faces": int(len(mesh.faces)), "points": int(len(points)), "seconds": round(t_sdf, 3),
                     "points_per_s": round(len(points) / t_sdf), "of_which_winding_number_s": round(t_wn, 3),
                     "max_abs_error_vs_analytic": float(np.abs(sdf - exact).max())},
        **extra,
    }, indent=1))


if __name__ == "__main__":
    main()
