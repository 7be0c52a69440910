"""`latentforge train <model>`: each trainable model registers its own subcommand.

A trainer module exposes ``register_train(train_subparsers)``.
"""

from __future__ import annotations

import argparse

from engine.cli import import_if_present

_TRAINERS = (
    "engine.models.points.cli",      # train points (LION-style latent point diffusion)
    "engine.eval.classifier_cli",    # train classifier (PointNet shape classifier for eval)
)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help="train a model on a dataset built by `latentforge dataset build`")
    tsub = parser.add_subparsers(dest="model", metavar="MODEL")
    for name in _TRAINERS:
        module = import_if_present(name)
        if module is not None:
            module.register_train(tsub)
