"""`make demo`: the main job on the embedded defaults, end to end.

1. The engine CLI starts a private engine and generates procedural assets (and point
   clouds when the learned `points` model is installed) into ``OUT/engine``.
2. The add-on, installed into headless Blender, starts its own engine from the
   preferences, generates through its operators, renders a PNG and saves a .blend
   into ``OUT/blender`` (scripts/demo_blender.py).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(cmd: list[str]) -> None:
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "out" / "demo")
    args = parser.parse_args()
    out = args.out.resolve()
    engine_out = out / "engine"
    py = sys.executable

    for category in ("chair", "table", "lamp"):
        run([py, "-m", "engine", "generate", "--model", "procedural", "--category", category,
             "--count", "2", "--seed", "7", "--format", "glb", "--out", str(engine_out / category)])

    models = subprocess.run([py, "-m", "engine", "models", "--json"], cwd=REPO, capture_output=True, text=True)
    if models.returncode == 0 and '"points"' in models.stdout:
        listing = json.loads(models.stdout)
        points = next((m for m in listing.get("models", []) if m.get("name") == "points"), {})
        if points.get("available"):
            run([py, "-m", "engine", "generate", "--model", "points", "--category", "chair",
                 "--count", "2", "--seed", "7", "--format", "ply", "--out", str(engine_out / "points")])

    run([py, str(REPO / "scripts" / "demo_blender.py"), "--out", str(out / "blender")])
    print(f"demo written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
