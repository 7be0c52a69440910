"""Interpolate: N shapes morphing from one selected object to another, built in a row between them."""

import bpy

from .. import scene_builders as sb
from ..engine_bridge import BRIDGE
from ..jobs import Job
from ..properties import output_params
from .common import check_ready, next_seed, poll_connected, report_bad_input


def ordered_pair(context: bpy.types.Context) -> tuple[bpy.types.Object, bpy.types.Object] | None:
    """(A, B) from exactly two selected objects: from the other selected one to the active one
    (Blender's "selected to active"), or by name when neither is active."""
    selected = list(context.selected_objects)
    if len(selected) != 2:
        return None
    active = context.view_layer.objects.active
    if active in selected:
        other = selected[0] if selected[1] == active else selected[1]
        return other, active
    a, b = sorted(selected, key=lambda o: o.name)
    return a, b


def _half_size(obj: bpy.types.Object) -> float:
    """Half the longest side of the object's bounding box, with its scale (the canonical frame is [-1, 1])."""
    return max(max(obj.dimensions) / 2.0, 1e-3)


class LATENTFORGE_OT_interpolate(bpy.types.Operator):
    """Make shapes morphing from one selected object (A) to the active one (B), placed in a row between them"""

    bl_idname = "latentforge.interpolate"
    bl_label = "Interpolate"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if len(context.selected_objects) != 2:
            cls.poll_message_set("Select exactly two mesh objects (the active one is the end shape)")
            return False
        return poll_connected(cls, "interpolate")

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.latentforge.interpolate
        pair = ordered_pair(context)
        if pair is None:
            self.report({"ERROR"}, "Select exactly two mesh objects to interpolate between.")
            return {"CANCELLED"}
        depsgraph = context.evaluated_depsgraph_get()
        arrays = {}
        # Check both objects before sending anything.
        for side, obj in zip(("a", "b"), pair):
            try:
                vertices, faces = sb.mesh_arrays(obj, depsgraph)
            except sb.BadArrays as exc:
                return report_bad_input(self, exc)
            arrays[f"{side}_vertices"], arrays[f"{side}_faces"] = vertices, faces
        model = check_ready(self, "interpolate", settings.model)
        if model is None:
            return {"CANCELLED"}
        params = {"count": int(settings.count), "steps": int(settings.steps), "seed": next_seed(settings)}
        if settings.category and settings.category != "NONE":
            params["category"] = settings.category
        params.update(output_params(settings, model))
        a, b = pair
        spec = {"task": "interpolate", "model": model, "params": params, "priority": 0}
        job = Job("interpolate", spec, f"{model}: {a.name} → {b.name}",
                  context={"source_a": a.name, "source_b": b.name, "count": int(settings.count),
                           "start": tuple(a.matrix_world.translation), "end": tuple(b.matrix_world.translation),
                           "size_a": _half_size(a), "size_b": _half_size(b)})
        BRIDGE.submit(job, arrays)
        self.report({"INFO"}, f"Interpolating {settings.count} shapes from {a.name} to {b.name} with {model}")
        return {"FINISHED"}


CLASSES = (LATENTFORGE_OT_interpolate,)
