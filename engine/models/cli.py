"""`latentforge train <model>`: each trainable model registers its own subcommand.

A trainer module exposes ``register_train(train_subparsers)``.
"""

from __future__ import annotations

import argparse
import importlib

_TRAINERS = (
    "engine.models.points.cli",      # train points (LION-style latent point diffusion)
    "engine.eval.classifier_cli",    # train classifier (PointNet shape classifier for eval)
)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help="train a model on a dataset built by `latentforge dataset build`")
    tsub = parser.add_subparsers(dest="model", metavar="MODEL")
    for name in _TRAINERS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if not (name == exc.name or name.startswith(f"{exc.name}.")):
                raise
            continue
        module.register_train(tsub)
