#!/usr/bin/env python3
"""Build the Blender extension zip: ``dist/latentforge-<version>.zip``.

The add-on ships the engine's protocol, client and errors modules unchanged (one
source): they are copied into ``addon/_link/`` (gitignored) at build time, the package
is staged next to ``blender_manifest.toml`` and packed by Blender's own
``blender_ext.py build`` so the archive is exactly what Blender's installer expects
(``__init__.py`` at the archive root). The result is then checked: manifest valid,
linked modules present, nothing imports torch or ``engine.*``.

    python scripts/build_extension.py [--out-dir dist] [--blender-ext PATH] [--json]
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ADDON = REPO / "addon"
LINK = ADDON / "_link"
MANIFEST = REPO / "blender_manifest.toml"
# Shipped inside the add-on; each uses only relative imports among these three.
LINKED_MODULES = ("errors.py", "protocol.py", "client.py")
_FORBIDDEN_IMPORT = re.compile(r"^\s*(import\s+(torch|engine)\b|from\s+(torch|engine)\b)", re.MULTILINE)


class BuildError(RuntimeError):
    """The extension could not be built; the message says why and what to do."""


def find_blender_ext() -> Path:
    """Locate ``blender_ext.py`` inside the installed ``bpy`` wheel without importing bpy."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.origin:
        raise BuildError("bpy is not installed in this Python, so Blender's extension tool is missing. "
                         "Install it with `pip install bpy==5.0.1` or pass --blender-ext PATH.")
    root = Path(spec.origin).parent
    found = sorted(glob.glob(str(root / "*" / "scripts" / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py")))
    if not found:
        raise BuildError(f"No blender_ext.py under {root}. Pass --blender-ext PATH.")
    return Path(found[-1])


def link_engine_modules() -> list[Path]:
    """Copy the engine's protocol/client/errors into ``addon/_link`` (the one source stays in engine/)."""
    LINK.mkdir(exist_ok=True)
    copied = []
    for name in LINKED_MODULES:
        src = REPO / "engine" / name
        if not src.is_file():
            raise BuildError(f"engine/{name} is missing; the add-on ships it unchanged and cannot be built without it.")
        text = src.read_text(encoding="utf-8")
        bad = _FORBIDDEN_IMPORT.search(text)
        if bad:
            raise BuildError(f"engine/{name} has `{bad.group(0).strip()}`; shipped modules may only use the "
                             "standard library, numpy and relative imports.")
        dst = LINK / name
        shutil.copyfile(src, dst)
        copied.append(dst)
    (LINK / "__init__.py").write_text(
        '"""Copied from engine/ by scripts/build_extension.py at build time; do not edit here."""\n',
        encoding="utf-8")
    return copied


def stage(build_dir: Path) -> Path:
    """Lay out the package (add-on sources + manifest) in a clean folder for ``blender_ext build``."""
    src = build_dir / "latentforge"
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(ADDON, src, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))
    shutil.copyfile(MANIFEST, src / "blender_manifest.toml")
    return src


def check_sources(src: Path) -> None:
    """Refuse a package whose Python would import torch or the engine inside Blender."""
    for py in sorted(src.rglob("*.py")):
        bad = _FORBIDDEN_IMPORT.search(py.read_text(encoding="utf-8"))
        if bad:
            raise BuildError(f"{py.relative_to(src)} has `{bad.group(0).strip()}`; the add-on may only import "
                             "the standard library, numpy and bpy.")


def run_tool(tool: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(tool), *args], capture_output=True, text=True)
    out = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        raise BuildError(f"blender_ext.py {args[0]} failed:\n{out}")
    return out


def check_archive(zip_path: Path) -> list[str]:
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
    for required in ("__init__.py", "blender_manifest.toml", *(f"_link/{n}" for n in LINKED_MODULES)):
        if required not in names:
            raise BuildError(f"{zip_path.name} lacks {required} at its root.")
    return names


def build(out_dir: Path, tool: Path | None = None, stage_dir: Path | None = None) -> dict:
    """Build and check the extension; return a summary dict."""
    manifest = tomllib.loads(MANIFEST.read_text(encoding="utf-8"))
    version = manifest["version"]
    tool = tool or find_blender_ext()
    link_engine_modules()
    src = stage(stage_dir or REPO / "build" / "extension")
    check_sources(src)
    tags = tool.parents[3] / "modules" / "_bpy_internal" / "extensions" / "tags.py"
    tag_args = [f"--valid-tags={tags}"] if tags.is_file() else []
    run_tool(tool, "validate", *tag_args, str(src))
    out_dir.mkdir(parents=True, exist_ok=True)
    zip_path = out_dir / f"{manifest['id']}-{version}.zip"
    if zip_path.exists():
        zip_path.unlink()
    run_tool(tool, "build", "--source-dir", str(src), "--output-filepath", str(zip_path), *tag_args)
    run_tool(tool, "validate", *tag_args, str(zip_path))
    names = check_archive(zip_path)
    return {"zip": str(zip_path), "version": version, "files": len(names), "bytes": zip_path.stat().st_size}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=REPO / "dist")
    parser.add_argument("--blender-ext", type=Path, default=None, help="path to Blender's blender_ext.py")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    try:
        summary = build(args.out_dir.resolve(), args.blender_ext)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary) if args.json else f"built {summary['zip']} ({summary['files']} files, {summary['bytes']} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
