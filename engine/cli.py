"""`latentforge` command line. Each layer registers its own subcommands.

A layer's ``cli`` module exposes ``register(subparsers)``; it adds its parsers and sets
``func`` (called with the parsed args, returning an exit code). Imports of heavy
modules (torch) happen inside the command functions so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from engine import __version__
from engine.errors import LatentforgeError

# Order is the order of `latentforge --help`.
_COMMAND_MODULES = (
    "engine.server.cli",       # serve, generate, refine, views, populate, jobs, result, models
    "engine.data.cli",         # dataset build / export
    "engine.eval.cli",         # eval points / classify, train classifier
    "engine.models.cli",       # train <model>
)


def import_if_present(name: str):
    """Module ``name``, or None when it (or a package above it) is not there.

    A module that exists but fails to import one of *its* dependencies still raises.
    """
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if name == exc.name or name.startswith(f"{exc.name}."):
            return None
        raise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="latentforge", description="Latentforge engine: 3D generative models for Blender.")
    parser.add_argument("--version", action="version", version=f"latentforge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        module = import_if_present(name)
        if module is not None:
            module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except LatentforgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
