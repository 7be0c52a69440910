"""Typed errors of the geometry layer (codes listed in docs/errors.md, "Geometry and rendering")."""

from __future__ import annotations

from engine import errors as core
from engine.errors import InvalidMesh, InvalidRequest


class EmptyMesh(core.EmptyMesh):
    """A mesh has no vertices, no faces, or only zero-area faces where area is needed."""

    advice = ("The mesh has nothing to work with (no vertices, no faces or zero surface area). "
              "Pick an object with faces, or apply its modifiers first.")


class NonFiniteGeometry(core.NonFiniteMesh):
    """Vertex coordinates, query points or SDF values contain NaN or infinity."""

    advice = ("Some coordinates are NaN or infinite. In Blender use Mesh > Clean Up > Delete Loose / "
              "Merge by Distance, or re-export the mesh.")


class BadFaceIndex(InvalidMesh):
    """A face refers to a vertex index that does not exist (or is negative)."""

    code = "geometry.bad_face_index"
    advice = "The face list does not match the vertex list; re-export the mesh."


class BadArrayShape(InvalidRequest):
    """An array passed to a geometry function has the wrong shape or dimension."""

    code = "geometry.bad_shape"
    advice = "Check the documented shapes of the geometry function (e.g. vertices N×3, faces M×3)."


class BadGridResolution(InvalidRequest):
    """A tetrahedral grid resolution is not a positive integer or too large to build."""

    code = "geometry.bad_resolution"
    advice = "Use a grid resolution between 1 and 256 (64 or 128 are typical)."


class ReconstructionFailed(InvalidMesh):
    """No usable surface could be reconstructed from a point cloud (``points_to_mesh``)."""

    code = "mesh.reconstruction_failed"
    advice = ("The points did not enclose any surface at this grid resolution. Use more points, a larger "
              "`radius` (the points may be too sparse) or a higher `resolution`, or keep the point cloud.")


class TooFewPoints(ReconstructionFailed):
    """Too few points to reconstruct a surface from (``points_to_mesh``)."""

    code = "mesh.too_few_points"
    advice = "Generate (or pass) more points: a mesh needs at least 16, and 1,000 or more give a usable shape."
