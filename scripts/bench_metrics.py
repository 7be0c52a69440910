"""Benchmark the point-cloud metrics on procedural shapes; prints one JSON object.

    python scripts/bench_metrics.py [--shapes 50] [--category chair] [--threads 1]

Measures: Chamfer per shape pair (cKDTree vs dense torch blocks), exact EMD per pair at
several subset sizes, and a full `compute_all_metrics` (val vs test split of one category,
2048 points, EMD on 512), plus the 1-NNA values it gives.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch


def _points(category: str, split: str, n: int, n_points: int) -> np.ndarray:
    from engine.data.procedural import generate_shape, split_seeds
    from engine.geometry.sampling import sample_surface

    out = []
    for seed in split_seeds(split, n):
        mesh = generate_shape(category, seed).mesh
        out.append(sample_surface(mesh.vertices, mesh.faces, n_points, seed=seed)[0])
    return np.stack(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", type=int, default=50, help="shapes per set")
    parser.add_argument("--category", default="chair")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from engine.eval.metrics import compute_all_metrics, normalize_points, pairwise_chamfer, pairwise_emd, subsample

    val = _points(args.category, "val", args.shapes, 2048)
    test = _points(args.category, "test", args.shapes, 2048)
    a, b = normalize_points(val[:8]), normalize_points(test[:8])
    result: dict = {"machine": f"{os.cpu_count()}-core CPU ({platform.machine()})",
                    "torch_threads": torch.get_num_threads(), "category": args.category}

    t = time.perf_counter()
    pairwise_chamfer(a, b, backend="kdtree")
    result["cd_pair_ms_kdtree"] = round((time.perf_counter() - t) / 64 * 1e3, 3)
    t = time.perf_counter()
    pairwise_chamfer(a, b, backend="torch")
    result["cd_pair_ms_torch"] = round((time.perf_counter() - t) / 64 * 1e3, 3)

    for n in (256, 512, 1024, 2048):
        pairs = 16 if n < 2048 else 4
        x, y = subsample(a[:4], n, 1), subsample(b[:4], n, 2)
        t = time.perf_counter()
        pairwise_emd(x, y) if pairs == 16 else pairwise_emd(x[:2], y[:2])
        result[f"emd_pair_ms_{n}"] = round((time.perf_counter() - t) / pairs * 1e3, 2)

    t = time.perf_counter()
    metrics = compute_all_metrics(val, test, emd_points=512)
    result[f"compute_all_metrics_s_{args.shapes}x{args.shapes}_2048pts_emd512"] = round(time.perf_counter() - t, 1)
    result["val_vs_test"] = {k: metrics[k] for k in ("1nna_cd", "1nna_emd", "cov_cd", "cov_emd",
                                                      "mmd_cd", "mmd_emd")}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
