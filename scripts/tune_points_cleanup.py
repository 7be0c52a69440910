"""Choose the points model's stray-point removal settings on the VAL split.

Samples each category once (latents kept), then decodes the same latents with every
(k, std_ratio) candidate and without removal, and prints the 1-NNA-CD against val-split
shapes as JSON (the test split stays untouched for the reported figures):

    python scripts/tune_points_cleanup.py --ckpt engine/checkpoints/points --per-category 16
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    from engine.eval.metrics import compute_all_metrics
    from engine.models.points.cleanup import remove_outliers
    from engine.models.points.evaluate import reference_points
    from engine.models.points.model import PointsModel
    from engine.models.points.sampler import LatentSampler

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", type=Path, required=True)
    p.add_argument("--per-category", type=int, default=16)
    p.add_argument("--categories")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--guidance", type=float, default=1.5)
    p.add_argument("--candidates", default="8:1.0,8:1.5,16:1.0,16:1.5,16:2.0,24:1.5",
                   help="comma-separated k:std_ratio pairs")
    p.add_argument("--oversample", type=float, default=1.25)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.set_grad_enabled(False)
    model = PointsModel.load(a.ckpt)
    s = LatentSampler(model)
    cands = [(int(k), float(r)) for k, r in (c.split(":") for c in a.candidates.split(","))]
    cats = a.categories.split(",") if a.categories else list(model.cfg.cond.categories)
    res: dict = {"checkpoint": str(a.ckpt), "split": "val", "per_category": a.per_category, "categories": {}}
    for c in cats:
        ref = reference_points(c, "val", a.per_category)
        cond = s.condition(torch.full((a.per_category,), model.cfg.cond.categories.index(c), dtype=torch.long))
        g = torch.Generator().manual_seed(0)
        _, z, h = s.run(cond, steps=a.steps, guidance=a.guidance, generator=g, return_latents=True, clean=False)
        many = s.decode(z, h, int(round(2048 * a.oversample)), torch.Generator().manual_seed(1), clean=False)
        row = {"none": compute_all_metrics(many[:, :2048].numpy(), ref, use_emd=False, seed=0)["1nna_cd"]}
        for k, r in cands:
            pts = remove_outliers(many, 2048, k, r, torch.Generator().manual_seed(2))
            row[f"{k}:{r}"] = compute_all_metrics(pts.numpy(), ref, use_emd=False, seed=0)["1nna_cd"]
        res["categories"][c] = row
        print(c, json.dumps(row), file=sys.stderr, flush=True)
    keys = list(next(iter(res["categories"].values())).keys())
    res["mean"] = {k: float(np.mean([r[k] for r in res["categories"].values()])) for k in keys}
    res["worst"] = {k: float(np.max([r[k] for r in res["categories"].values()])) for k in keys}
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
