"""Typed errors of the data layer (procedural shapes, datasets, user meshes).

Codes are listed in docs/errors.md under "Data". Mesh problems subclass
:class:`engine.errors.InvalidMesh` so callers that catch that keep working.
"""

from __future__ import annotations

from engine import errors as core
from engine.errors import InvalidMesh, InvalidRequest, LatentforgeError


class UnknownCategory(InvalidRequest):
    """A procedural category name that the generator does not have."""

    code = "data.unknown_category"
    advice = "Pick one of the categories listed by `latentforge dataset categories`."


class InvalidShapeParams(InvalidRequest):
    """An override of a procedural shape parameter is unknown, of the wrong type or out of range."""

    code = "data.invalid_params"
    advice = "Use only the parameters (and ranges/choices) listed in docs/dataset.md for that category."


class InvalidSplit(InvalidRequest):
    """A split name other than train/val/test, or more shapes than the split's seed range holds."""

    code = "data.invalid_split"
    advice = "Use --split train, val or test, and at most the documented number of shapes per split."


class DatasetNotFound(LatentforgeError):
    """A dataset folder (or one of its splits) has no built shapes."""

    code = "data.not_found"
    advice = "Build it first: `latentforge dataset build --out DIR --split SPLIT`."


class MeshUnreadable(InvalidMesh):
    """The file is missing, of an unsupported format, or could not be parsed."""

    code = "mesh.unreadable"
    advice = "Export the mesh again as OBJ, PLY, STL, OFF or GLB (File > Export in Blender)."


class EmptyMesh(core.EmptyMesh):
    """The file holds no usable triangles (no faces, only points, or only zero-area faces)."""

    advice = "The file has no surface to learn from; check that it contains faces, not only points or lines."


class NonFiniteMesh(core.NonFiniteMesh):
    """Vertex coordinates contain NaN or infinity."""

    advice = "Fix the exporter or the mesh (Mesh > Clean Up in Blender); coordinates must be finite numbers."


class MeshTooLarge(InvalidMesh):
    """More faces (or a bigger file) than the configured limit."""

    code = "mesh.too_large"
    advice = ("Decimate the mesh (Blender: Decimate modifier) below the limit, or raise it with "
              "--max-faces if you have the memory and time.")


class DatasetMismatch(LatentforgeError):
    """A built dataset does not hold what was asked of it (e.g. fewer points per shape)."""

    code = "data.mismatch"
    advice = "Rebuild the dataset with matching settings (e.g. --n-points), or ask for less."


class InvalidExportFormat(InvalidRequest):
    """An export format other than ply, obj, glb or stl."""

    code = "data.invalid_format"
    advice = "Use --format ply, obj, glb or stl."
