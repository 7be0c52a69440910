"""scripts/check_disk.py: the set-up's early stop when the disk cannot hold .venv."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check_disk.py"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)


def test_enough_space_passes(tmp_path: Path) -> None:
    assert run(str(tmp_path / "not" / "yet" / ".venv"), "0.001").returncode == 0


def test_too_little_space_stops_with_advice(tmp_path: Path) -> None:
    res = run(str(tmp_path / ".venv"), "1e9")  # a billion GiB: no disk has it
    assert res.returncode == 1
    assert "[disk_full]" in res.stderr and "Free some disk" in res.stderr


def test_bad_usage() -> None:
    assert run().returncode == 2
