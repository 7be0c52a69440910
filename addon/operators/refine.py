"""Refine Selected: send each selected object's mesh (object space) to the engine and swap in the result."""

import bpy

from .. import scene_builders as sb
from ..engine_bridge import BRIDGE
from ..jobs import Job
from ..properties import output_params
from .common import check_ready, poll_connected, report_bad_input


class LATENTFORGE_OT_refine(bpy.types.Operator):
    """Refine the selected objects; each result keeps the object's transform, name, materials and collections"""

    bl_idname = "latentforge.refine"
    bl_label = "Refine Selected"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if not context.selected_objects:
            cls.poll_message_set("Select one or more mesh objects")
            return False
        return poll_connected(cls, "refine")

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.latentforge.refine
        objects = sorted(context.selected_objects, key=lambda o: o.name)
        depsgraph = context.evaluated_depsgraph_get()
        inputs = []
        # Check every object before sending anything, so a bad one does not leave half the work queued.
        for obj in objects:
            try:
                vertices, faces = sb.mesh_arrays(obj, depsgraph)
            except sb.BadArrays as exc:
                return report_bad_input(self, exc)
            inputs.append((obj, vertices, faces))
        model = check_ready(self, "refine", settings.model)
        if model is None:
            return {"CANCELLED"}
        params = {"strength": float(settings.strength), "steps": int(settings.steps)}
        if settings.prompt.strip():
            params["prompt"] = settings.prompt.strip()
        params.update(output_params(settings, model))
        for obj, vertices, faces in inputs:
            spec = {"task": "refine", "model": model, "params": dict(params), "priority": 0}
            job = Job("refine", spec, f"{model}: refine {obj.name}",
                      context={"source": obj.name, "source_name": obj.name, "mode": settings.mode,
                               "matrix_world": [list(row) for row in obj.matrix_world]})
            BRIDGE.submit(job, {"vertices": vertices, "faces": faces})
        self.report({"INFO"}, f"Refining {len(inputs)} object(s) with {model}")
        return {"FINISHED"}


CLASSES = (LATENTFORGE_OT_refine,)
