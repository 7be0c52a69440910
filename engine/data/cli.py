"""`latentforge dataset build | export | categories`: cached datasets and plain mesh exports."""

from __future__ import annotations

import argparse
import json
import logging
import sys


def register(sub: argparse._SubParsersAction) -> None:
    """Add `dataset` and its subcommands to the top-level parser."""
    parser = sub.add_parser("dataset", help="build cached training datasets, export procedural shapes")
    dsub = parser.add_subparsers(dest="dataset_command", metavar="WHAT")

    b = dsub.add_parser("build", help="build (or resume) a cached dataset: mesh, points, tet-grid SDF, renders",
                        description="Per shape: mesh.ply, points.npz (surface points + normals), sdf.npz (SDF at "
                                    "the tet-grid vertices), renders.npz (RGBA + camera poses), meta.json "
                                    "(captions, parameters); DIR/index.json lists them. Resumable: finished "
                                    "shapes are kept. See docs/dataset.md.")
    b.add_argument("--out", required=True, help="dataset folder (created or resumed)")
    b.add_argument("--categories", nargs="+", help="procedural categories (default: all) or, with "
                                                   "--from-folder, the folder categories to keep")
    b.add_argument("--per-category", type=int, default=50, help="procedural shapes per category (default 50)")
    b.add_argument("--split", choices=("train", "val", "test"),
                   help="split to build (default train; --from-folder: ModelNet train/test folders, else train)")
    b.add_argument("--workers", type=int, default=1, help="parallel worker processes (default 1)")
    b.add_argument("--n-points", type=int, default=2048, help="surface points per shape (default 2048)")
    b.add_argument("--grid-res", type=int, default=32, help="tet-grid resolution R of the SDF (default 32)")
    b.add_argument("--render-size", type=int, default=128, help="render width = height in pixels (default 128)")
    b.add_argument("--fixed-views", type=int, default=8, help="renders on a fixed orbit (default 8)")
    b.add_argument("--random-views", type=int, default=8, help="renders from random cameras (default 8)")
    b.add_argument("--fov", type=float, default=40.0, help="camera field of view in degrees (default 40)")
    b.add_argument("--framing", choices=("tight", "cube"), default="tight",
                   help="camera distance: fit each shape's bounding sphere (default) or the whole cube")
    b.add_argument("--no-renders", action="store_true", help="skip renders (much faster)")
    b.add_argument("--from-folder", metavar="DIR", help="build from a folder of user meshes instead")
    b.add_argument("--layout", choices=("auto", "shapenet", "modelnet", "flat"), default="auto",
                   help="user folder layout (default: detected)")
    b.add_argument("--y-up", action="store_true", help="user meshes are +Y up (glTF, ShapeNet): rotate to +Z up")
    b.add_argument("--max-faces", type=int, default=2_000_000, help="skip user meshes with more faces")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.set_defaults(func=_build)

    e = dsub.add_parser("export", help="write procedural shapes as <category>/<id>.<ext> mesh files")
    e.add_argument("--out", required=True, help="output folder")
    e.add_argument("--split", choices=("train", "val", "test"), default="test")
    e.add_argument("--per-category", type=int, default=10)
    e.add_argument("--format", choices=("ply", "obj", "glb", "stl"), default="ply")
    e.add_argument("--categories", nargs="+", help="default: all")
    e.add_argument("--y-up", action="store_true", help="write +Y up (glTF convention) instead of +Z up")
    e.add_argument("--no-progress", action="store_true")
    e.set_defaults(func=_export)

    c = dsub.add_parser("categories", help="procedural categories and their parameters, as JSON")
    c.add_argument("--params", action="store_true", help="include each category's parameter space")
    c.set_defaults(func=_categories)

    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def _build(args: argparse.Namespace) -> int:
    from engine.data.dataset import BuildSettings, build_dataset, folder_tasks, procedural_tasks
    from engine.data.procedural import CATEGORIES

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    settings = BuildSettings(n_points=args.n_points, grid_res=args.grid_res, renders=not args.no_renders,
                             render_size=args.render_size, fixed_views=args.fixed_views,
                             random_views=args.random_views, fov_deg=args.fov, framing=args.framing)
    if args.from_folder:
        tasks = folder_tasks(args.from_folder, split=args.split, layout=args.layout, y_up=args.y_up,
                             max_faces=args.max_faces, categories=args.categories)
    else:
        tasks = procedural_tasks(args.split or "train", args.categories or list(CATEGORIES), args.per_category)
    report = build_dataset(args.out, tasks, settings, workers=max(1, args.workers), progress=not args.no_progress)
    summary = report.to_json()
    summary["shapes_per_second"] = round(report.built / report.seconds, 3) if report.seconds > 0 else None
    print(json.dumps(summary, indent=1))
    if report.skipped:
        print(f"{len(report.skipped)} mesh(es) skipped; reasons above and in {args.out}/index.json", file=sys.stderr)
    return 0


def _export(args: argparse.Namespace) -> int:
    from engine.data.dataset import export_shapes

    paths = export_shapes(args.out, args.split, args.per_category, args.format, args.categories, y_up=args.y_up,
                          progress=not args.no_progress)
    print(json.dumps({"written": len(paths), "out": args.out, "format": args.format}))
    return 0


def _categories(args: argparse.Namespace) -> int:
    from engine.data.procedural import CATEGORIES, parameter_space

    if args.params:
        print(json.dumps({c: parameter_space(c) for c in CATEGORIES}, indent=1))
    else:
        print(json.dumps(list(CATEGORIES)))
    return 0
