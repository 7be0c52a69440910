"""Stop `make` set-up early, with advice, when the disk cannot hold the virtual environment.

The set-up installs torch's CUDA build (about 5.6 GB) and bpy into ``.venv``: 6.7 GB in all.
A disk that fills half-way through leaves a broken venv and pip's bare "No space left on
device"; checking first says what is needed and what to free instead.
Usage: ``python scripts/check_disk.py PATH MIN_GIB`` (exit 0 when PATH's disk has MIN_GIB free).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def free_gib(path: Path) -> float:
    """Free space in GiB on the disk that holds ``path`` (or its nearest existing parent)."""
    path = path.resolve()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free / 2**30


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: check_disk.py PATH MIN_GIB", file=sys.stderr)
        return 2
    path, need = Path(argv[0]), float(argv[1])
    have = free_gib(path)
    if have < need:
        print(f"[disk_full] setting up {path} needs about {need:.1f} GiB free (torch's CUDA build "
              f"and bpy), but only {have:.1f} GiB is free there. Free some disk (old clones, "
              f"virtual environments, pip caches) and run make again.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
