#!/usr/bin/env python
"""Speed (and optionally quality vs. steps) of a generator, as JSON on stdout.

    python scripts/bench_generate.py --model points [--batch 8] [--steps 25] [--threads 1]
        [--device cpu|cuda] [--direct]
        [--quality 10,25,50,1000 --quality-categories chair,table --quality-n 16]

For ``points`` it loads the pipeline once (warm engine), runs one warm-up job, then
measures: seconds per shape at ``--batch`` shapes per job with ``--steps`` sampler steps
per prior (guided), and the time from the start of a job to its first preview event.
On ``--device cuda`` jobs run on the GPU (the pipeline works through ``--batch`` in chunks
of its ``BATCH`` shapes); ``--direct`` also times ``LatentSampler.run`` on all ``--batch``
shapes at once, without the pipeline's chunking.
``--quality`` adds 1-NNA-CD/COV-CD (engine.eval.metrics) of samples at each step count
against the procedural test split. Goals (2-core CPU): < 1 s per shape, < 0.3 s to the
first preview.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class _Ctx:
    def __init__(self, t0: float, preview_every: int = 1, device: str = "cpu") -> None:
        self.t0, self.first_preview, self.every, self.device = t0, None, preview_every, device

    def progress(self, stage, step, total):
        pass

    def wants_preview(self, step):
        return step % self.every == 0

    def preview(self, kind, arrays, meta=None):
        if self.first_preview is None:
            self.first_preview = time.perf_counter() - self.t0

    def check_cancelled(self):
        pass


def bench_points(args) -> dict:
    import torch

    from engine.pipelines.points import PointsPipeline
    torch.set_num_threads(args.threads)
    pipe = PointsPipeline(args.checkpoint) if args.checkpoint else PointsPipeline()
    st = pipe.status()
    if not st["available"]:
        return {"model": "points", "available": False, "reason": st["reason"]}
    t = time.perf_counter()
    pipe.model(args.device)
    load_s = time.perf_counter() - t
    cat = args.category or pipe.categories()[0]
    if args.guidance is None:
        args.guidance = pipe.default_guidance()
    params = pipe.validate("generate", {"category": cat, "count": args.batch, "steps": args.steps,
                                        "guidance": args.guidance, "seed": 0})
    pipe.run("generate", params, _Ctx(time.perf_counter(), device=args.device))          # warm-up
    per_shape, first_preview = [], []
    for r in range(args.repeats):
        params["seed"] = 100 * (r + 1)
        t0 = time.perf_counter()
        pipe.run("generate", params, _Ctx(t0, preview_every=10**9, device=args.device))
        per_shape.append((time.perf_counter() - t0) / args.batch)
        one = pipe.validate("generate", {"category": cat, "count": 1, "steps": args.steps,
                                         "guidance": args.guidance, "seed": r})
        t0 = time.perf_counter()
        ctx = _Ctx(t0, device=args.device)
        pipe.run("generate", one, ctx)
        first_preview.append(ctx.first_preview)
    out = {"model": "points", "device": args.device, "threads": args.threads, "machine": args.machine,
           "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
           "load_s": round(load_s, 3), "batch": args.batch, "steps_per_prior": args.steps,
           "guidance": args.guidance, "n_points": 2048,
           "seconds_per_shape": round(statistics.median(per_shape), 4),
           "shapes_per_s": round(1 / statistics.median(per_shape), 2),
           "seconds_per_shape_all": [round(x, 4) for x in per_shape],
           "first_preview_s": round(statistics.median(first_preview), 4),
           "first_preview_s_all": [round(x, 4) for x in first_preview],
           "goals": {"seconds_per_shape": 1.0, "first_preview_s": 0.3}}
    if args.device.startswith("cuda"):
        out["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
        out["pipeline_chunk"] = _pipeline_chunk()
    if args.direct:
        out["direct"] = direct(pipe.model(args.device), cat, args)
    if args.quality:
        out["quality"] = quality(pipe.model(args.device), args)
    return out


def _pipeline_chunk():
    from engine.pipelines import points
    return getattr(points, "BATCH", None)


def _sync(device: str) -> None:
    import torch
    if device.startswith("cuda"):
        torch.cuda.synchronize(torch.device(device))


def direct(model, category: str, args) -> dict:
    """Seconds per shape of one ``LatentSampler.run`` over all ``--batch`` shapes (no chunks)."""
    import torch

    from engine.models.points.sampler import LatentSampler
    s = LatentSampler(model)
    cid = model.cfg.cond.categories.index(category)
    cond = s.condition(torch.full((args.batch,), cid, dtype=torch.long))

    def once(seed: int) -> float:
        g = torch.Generator(device=args.device).manual_seed(seed)
        _sync(args.device)
        t0 = time.perf_counter()
        pts = s.run(cond, n_points=2048, steps=args.steps, guidance=args.guidance, generator=g)
        pts.cpu()
        _sync(args.device)
        return time.perf_counter() - t0

    once(0)  # warm-up
    times = [once(r + 1) for r in range(args.repeats)]
    sec = statistics.median(times)
    return {"batch": args.batch, "seconds_per_batch": round(sec, 4),
            "seconds_per_shape": round(sec / args.batch, 5), "shapes_per_s": round(args.batch / sec, 2),
            "seconds_per_batch_all": [round(x, 4) for x in times]}


def quality(model, args) -> dict:
    from engine.eval.metrics import compute_all_metrics
    from engine.models.points.evaluate import reference_points, sample_category
    cats = args.quality_categories.split(",") if args.quality_categories else model.cfg.cond.categories[:3]
    res = {}
    refs = {c: reference_points(c, "test", args.quality_n) for c in cats}
    for steps in [int(s) for s in args.quality.split(",")]:
        row = {}
        for c in cats:
            samples, sec = sample_category(model, c, args.quality_n, steps, args.guidance, seed=1,
                                           sampler="ddpm" if steps >= 900 else "dpmsolver++")
            m = compute_all_metrics(samples, refs[c], use_emd=False, device=args.device)
            row[c] = {"1nna_cd": m["1nna_cd"], "cov_cd": m["cov_cd"], "mmd_cd": m["mmd_cd"], "seconds_per_shape": sec}
        row["mean_1nna_cd"] = statistics.mean(v["1nna_cd"] for k, v in row.items() if isinstance(v, dict))
        res[str(steps)] = row
        print(f"steps {steps}: mean 1-NNA-CD {row['mean_1nna_cd']:.3f}", file=sys.stderr, flush=True)
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="points", choices=("points",))
    p.add_argument("--checkpoint")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--guidance", type=float, help="default: the checkpoint's diffusion.guidance")
    p.add_argument("--category")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--machine", default="2-core CPU")
    p.add_argument("--direct", action="store_true",
                   help="also time LatentSampler.run on all --batch shapes at once (no pipeline chunks)")
    p.add_argument("--quality", help="comma-separated step counts, e.g. 10,25,50,1000")
    p.add_argument("--quality-categories")
    p.add_argument("--quality-n", type=int, default=16)
    args = p.parse_args(argv)
    print(json.dumps(bench_points(args), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
