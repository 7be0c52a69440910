"""Typed errors of the eval layer (metrics, point/mesh readers, shape classifier).

Every class has a stable ``code`` (listed in docs/errors.md under "Eval") and advice.
"""

from __future__ import annotations

from engine import errors as core
from engine.errors import InvalidMesh, InvalidRequest, LatentforgeError, ModelUnavailable


class UnreadableShapeFile(InvalidMesh):
    """A point or mesh file could not be parsed, or its format is not supported."""

    code = "eval.file_unreadable"
    advice = ("Use .ply, .obj, .off, .stl, .glb or .npz (array 'points' of shape N×3); "
              "re-export the file from Blender if it is damaged.")


class EmptyShape(core.EmptyMesh):
    """A file holds no points, or a mesh whose faces have no area to sample from."""

    advice = "Check that the file contains geometry (Blender: Mesh > Clean Up > Delete Loose)."


class NonFiniteShape(core.NonFiniteMesh):
    """A file has NaN or infinite coordinates."""

    advice = "Remove or fix the NaN/inf vertices (they usually come from a failed generation or export)."


class TooFewPoints(InvalidMesh):
    """A point file holds fewer points than the evaluation needs."""

    code = "eval.too_few_points"
    advice = "Provide at least --n-points points per file, or lower --n-points (the same for both sets)."


class ShapeFileTooLarge(InvalidMesh):
    """A file is larger than the reader's size limit."""

    code = "eval.file_too_large"
    advice = "Decimate the mesh (Blender: Decimate modifier) or raise --max-file-mb."


class NoShapes(InvalidRequest):
    """A folder holds no usable point or mesh file."""

    code = "eval.no_shapes"
    advice = "Point the command at a folder of .ply/.obj/.npz files (optionally in <category>/ subfolders)."


class BadPointSet(InvalidRequest):
    """Point arrays passed to a metric have the wrong shape, size or values."""

    code = "eval.bad_points"
    advice = "Pass float arrays of shape S×N×3 with the same N for both sets and finite coordinates."


class NoCommonCategories(InvalidRequest):
    """Per-category evaluation found no category present in both folders."""

    code = "eval.no_common_categories"
    advice = "Both folders need <category>/ subfolders with matching names for --per-category."


class ClassifierUnavailable(ModelUnavailable):
    """The shape classifier checkpoint is missing or incomplete."""

    code = "eval.classifier_missing"
    advice = ("Train it with `latentforge train classifier --data DIR --out CKPT_DIR` or pass the "
              "folder holding config.json and model.safetensors.")


class ClassifierCheckpointInvalid(LatentforgeError):
    """The classifier checkpoint exists but does not match its config."""

    code = "eval.classifier_invalid"
    advice = "Re-train the classifier or restore engine/checkpoints/classifier/ from the release."


class TrainingDataMissing(InvalidRequest):
    """`train classifier` found no training or test shapes."""

    code = "eval.train_data_missing"
    advice = ("Build the dataset first: `latentforge dataset build --out DIR --split train` and "
              "`--split test`, then pass --data DIR.")
