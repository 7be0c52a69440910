"""`latentforge train classifier`: train the PointNet shape classifier (resumable)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys


def register_train(tsub: argparse._SubParsersAction) -> None:
    """Add the `classifier` parser to `latentforge train`'s subparsers."""
    p = tsub.add_parser("classifier", help="train the PointNet shape classifier used by `eval classify`",
                        description="Train the shape classifier. Data: --data DIR with train/ and test/ "
                                    "subfolders (dataset cache or <category>/<id>.ply files), or "
                                    "--procedural N to draw N shapes per category from the procedural "
                                    "generator's train split (and --procedural-test M from its test split). "
                                    "Interrupted runs resume from OUT/train_state.pt.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="dataset folder with train/ and test/ subfolders")
    src.add_argument("--procedural", type=int, metavar="N", help="training shapes per category, generated")
    p.add_argument("--procedural-test", type=int, default=30, metavar="M",
                   help="test shapes per category when --procedural is used (default 30)")
    p.add_argument("--categories", nargs="+", help="restrict --procedural to these categories")
    p.add_argument("--out", required=True, help="checkpoint folder to write (config.json, model.safetensors, MODEL.md)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--n-points", type=int, default=512, help="points per training cloud (random subset of 2048)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import torch

    from engine.eval.classifier_train import (generate_procedural_splits, load_folder_splits,
                                              train_classifier)

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.data:
        train, test = load_folder_splits(args.data)
        note = f"folder {args.data} (train/ and test/ splits)"
    else:
        train, test = generate_procedural_splits(args.procedural, args.procedural_test, args.out,
                                                 categories=args.categories)
        note = (f"procedural generator, {args.procedural} train-split seeds and {args.procedural_test} "
                f"test-split seeds per category, 2048 surface points per shape")
    command = "latentforge train classifier " + " ".join(shlex.quote(a) for a in sys.argv[3:]) \
        if sys.argv[1:3] == ["train", "classifier"] else ""
    report = train_classifier(train, test, args.out, epochs=args.epochs, batch_size=args.batch_size,
                              lr=args.lr, n_points=args.n_points, seed=args.seed, data_note=note,
                              command=command)
    print(json.dumps({k: report[k] for k in ("accuracy", "per_class", "n_test", "epochs", "steps",
                                              "train_wall_s", "machine")}, indent=2))
    return 0
