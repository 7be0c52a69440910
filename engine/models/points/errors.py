"""Errors of the point model (codes listed in docs/errors.md under "Points")."""

from __future__ import annotations

from engine.errors import InvalidMesh, InvalidRequest, ModelUnavailable


class PointsCheckpointMissing(ModelUnavailable):
    """The point model's checkpoint folder is missing or incomplete."""

    code = "points.checkpoint_missing"
    advice = ("Install the shipped checkpoint (engine/checkpoints/points) or train one with "
              "`latentforge train points --data procedural --out DIR` and set LATENTFORGE_POINTS_CHECKPOINT=DIR.")


class UnknownCondition(InvalidRequest):
    """The category (or prompt) names nothing the model was trained on."""

    code = "points.unknown_category"
    advice = "Use one of the model's categories (see `latentforge models`), or leave it out for an unconditional sample."


class ImageConditionUnsupported(ModelUnavailable):
    """An image condition was given but this checkpoint is conditioned on categories."""

    code = "points.image_condition_unsupported"
    advice = "This checkpoint takes a category; image prompts need a CLIP-conditioned checkpoint."


class RefineInputMissing(InvalidRequest):
    """A refine job came without the object's arrays."""

    code = "points.refine_input_missing"
    advice = "Send the object as arrays `vertices` (f32 N×3) + `faces` (i32 M×3), or `points` (f32 N×3)."


class DegenerateInput(InvalidMesh):
    """The object to refine has no extent (a single point, all points equal, zero-area faces)."""

    code = "points.degenerate_input"
    advice = "Select an object with a visible surface (at least a few distinct points spanning some volume)."


class InputTooLarge(InvalidMesh):
    """The object to refine is larger than the engine accepts."""

    code = "points.input_too_large"
    advice = "Decimate the mesh (Blender: Decimate modifier) or refine a smaller object."
