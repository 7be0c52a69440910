"""`latentforge eval points | classify | images`: metrics on folders of files, as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    """Add `eval` and its subcommands to the top-level parser."""
    parser = sub.add_parser("eval", help="evaluate generated shapes and views (metrics as JSON)")
    esub = parser.add_subparsers(dest="eval_command", metavar="WHAT")

    p = esub.add_parser("points", help="MMD / COV / 1-NNA (CD and EMD) between two folders of shapes",
                        description="Read mesh or point files (ply/obj/off/stl/glb/npz) from two folders, "
                                    "sample meshes to --n-points, and print MMD, COV and 1-NNA under Chamfer "
                                    "and EMD as JSON (COV and 1-NNA are fractions in [0, 1]).")
    p.add_argument("--generated", required=True, help="folder of generated shapes")
    p.add_argument("--reference", required=True, help="folder of reference shapes")
    p.add_argument("--n-points", type=int, default=2048, help="points per shape (default 2048)")
    p.add_argument("--emd-points", type=int, default=512,
                   help="points per shape for exact EMD (subset; default 512, 0 = all --n-points)")
    p.add_argument("--no-emd", action="store_true", help="skip EMD (Chamfer metrics only)")
    p.add_argument("--normalize", choices=("box", "sphere", "none"), default="box",
                   help="per-shape normalization applied to both sets (default: box, as LION)")
    p.add_argument("--per-category", action="store_true",
                   help="also evaluate each category present in both folders (<category>/ subfolders)")
    p.add_argument("--seed", type=int, default=0, help="seed of surface sampling and EMD subsets")
    p.add_argument("--device", default="cpu", help="device for Chamfer distances (cpu, cuda, auto)")
    p.add_argument("--workers", type=int, default=1,
                   help="processes for EMD (default 1; use the idle cores of a bigger machine)")
    p.add_argument("--max-file-mb", type=float, default=1024.0, help="skip files larger than this")
    p.add_argument("--out", help="also write the JSON to this file")
    p.set_defaults(func=_points)

    c = esub.add_parser("classify", help="classify shapes with the shipped PointNet classifier",
                        description="Classify every shape file in a folder; with <category>/ subfolders "
                                    "the accuracy against the folder names is reported (a fraction).")
    c.add_argument("--input", required=True, help="folder of shapes (optionally <category>/<id>.ext)")
    c.add_argument("--checkpoint", help="classifier folder (default: the shipped one)")
    c.add_argument("--n-points", type=int, default=2048)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--max-file-mb", type=float, default=1024.0)
    c.add_argument("--out", help="also write the JSON to this file")
    c.set_defaults(func=_classify)

    i = esub.add_parser("images", help="PSNR / SSIM between two folders of images with matching names")
    i.add_argument("--pred", required=True, help="folder of predicted images (png/jpg)")
    i.add_argument("--target", required=True, help="folder of target images, same file names")
    i.add_argument("--out", help="also write the JSON to this file")
    i.set_defaults(func=_images)

    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def _emit(result: dict[str, Any], out: str | None) -> None:
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        Path(out).write_text(text + "\n")


def _points(args: argparse.Namespace) -> int:
    import numpy as np

    from engine.device import resolve_device
    from engine.eval.errors import NoCommonCategories
    from engine.eval.metrics import compute_all_metrics
    from engine.eval.readers import read_point_folder

    device = resolve_device(args.device)  # fail before the (slow) reading
    gen = read_point_folder(args.generated, args.n_points, seed=args.seed,
                            max_file_mb=args.max_file_mb, progress=True)
    ref = read_point_folder(args.reference, args.n_points, seed=args.seed,
                            max_file_mb=args.max_file_mb, progress=True)
    kwargs = dict(normalize=args.normalize, emd_points=args.emd_points or None,
                  use_emd=not args.no_emd, seed=args.seed, device=device,
                  workers=args.workers, progress=True)
    result: dict[str, Any] = compute_all_metrics(gen.points, ref.points, **kwargs)
    if args.per_category:
        common = sorted({c for c in gen.categories if c} & {c for c in ref.categories if c})
        if not common:
            raise NoCommonCategories(f"No category subfolder is in both {args.generated} and {args.reference}.")
        per_cat = {}
        for cat in common:
            gi = np.array([k for k, c in enumerate(gen.categories) if c == cat])
            ri = np.array([k for k, c in enumerate(ref.categories) if c == cat])
            if len(gi) + len(ri) < 3:
                per_cat[cat] = {"skipped": "fewer than 3 shapes in total"}
                continue
            print(f"category {cat}: {len(gi)} generated, {len(ri)} reference", file=sys.stderr)
            per_cat[cat] = compute_all_metrics(gen.points[gi], ref.points[ri], **kwargs)
        result["per_category"] = per_cat
    result["skipped"] = {"generated": gen.skipped, "reference": ref.skipped}
    _emit(result, args.out)
    return 0


def _classify(args: argparse.Namespace) -> int:
    from engine.eval.classifier import load_classifier
    from engine.eval.readers import read_point_folder

    clf = load_classifier(args.checkpoint)
    # Max-pooling makes repeated points harmless, so small point files are padded.
    data = read_point_folder(args.input, args.n_points, seed=args.seed,
                             max_file_mb=args.max_file_mb, progress=True, pad=True)
    labels, probs = clf.predict(data.points)
    per_file, correct, counted = {}, 0, 0
    for k, (sid, cat, label) in enumerate(zip(data.ids, data.categories, labels)):
        entry: dict[str, Any] = {"label": label, "confidence": round(float(probs[k].max()), 4)}
        if cat is not None:
            entry["category"] = cat
            if cat in clf.categories:  # folders named after unknown categories cannot be scored
                entry["correct"] = label == cat
                correct += int(label == cat)
                counted += 1
        per_file[sid] = entry
    result = {"accuracy": (correct / counted) if counted else None, "n_scored": counted,
              "n_files": len(per_file), "categories": clf.categories, "per_file": per_file,
              "skipped": data.skipped}
    _emit(result, args.out)
    return 0


def _images(args: argparse.Namespace) -> int:
    from engine.eval.image_metrics import evaluate_image_folders

    _emit(evaluate_image_folders(args.pred, args.target), args.out)
    return 0
