"""Listing models (engine start, `latentforge models`) must not import torch: it costs seconds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_PROBE = """
import json, sys
from engine.pipelines import registry
models = registry.list_models()
print(json.dumps({"torch": "torch" in sys.modules, "diffusers": "diffusers" in sys.modules,
                  "points": next(m for m in models if m["name"] == "points")}))
"""


def _probe(env_extra: dict[str, str] | None = None) -> dict:
    import os
    env = dict(os.environ, **(env_extra or {}))
    env.pop("LATENTFORGE_EXTRA_PIPELINES", None)
    # a fresh interpreter: other tests in this process have imported torch already
    proc = subprocess.run([sys.executable, "-c", _PROBE], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_listing_models_does_not_import_torch():
    out = _probe()
    assert out["torch"] is False and out["diffusers"] is False
    assert "interpolate" in out["points"]["tasks"]


def test_listing_without_a_checkpoint_does_not_import_torch(tmp_path):
    out = _probe({"LATENTFORGE_POINTS_CHECKPOINT": str(tmp_path / "none")})
    assert out["torch"] is False
    assert out["points"]["available"] is False and "does not exist" in out["points"]["reason"]


def test_models_command_does_not_import_torch(tmp_path):
    import os
    code = ("import sys\nfrom engine.cli import main\nrc = main(['models', '--json'])\n"
            "print('TORCH', 'torch' in sys.modules)\nsys.exit(rc)\n")
    env = dict(os.environ, LATENTFORGE_DATA_DIR=str(tmp_path / "data"), XDG_RUNTIME_DIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert '"name": "points"' in proc.stdout and proc.stdout.strip().endswith("TORCH False")
