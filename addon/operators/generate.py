"""Generate: new objects from a prompt, a category or an image, placed at the 3D cursor."""

import bpy

from .. import scene_builders as sb
from ..engine_bridge import BRIDGE
from ..jobs import Job
from ..properties import model_categories, output_params
from .common import check_ready, load_image_array, next_seed, poll_connected, report_bad_input


def generate_params(settings) -> tuple[dict, dict | None, str]:
    """(params, arrays, label) for the generate settings; raises ``BadArrays`` for a bad image."""
    params: dict = {"count": int(settings.count), "steps": int(settings.steps)}
    if settings.custom_guidance:
        params["guidance"] = float(settings.guidance)
    arrays = None
    if settings.input_mode == "TEXT":
        params["prompt"] = settings.prompt.strip()
        label = params["prompt"] or "text"
    elif settings.input_mode == "CATEGORY":
        cats = model_categories(settings.model)
        category = settings.category if cats and settings.category != "NONE" else settings.category_text.strip()
        params["category"] = category
        label = category
    else:
        arrays = {"image": load_image_array(settings.image_path)}
        params["image"] = "image"
        label = bpy.path.display_name_from_filepath(settings.image_path) or "image"
    return params, arrays, label


class LATENTFORGE_OT_generate(bpy.types.Operator):
    """Generate new objects with the chosen model; they appear at the 3D cursor"""

    bl_idname = "latentforge.generate"
    bl_label = "Generate"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return poll_connected(cls, "generate")

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.latentforge.generate
        model = check_ready(self, "generate", settings.model)
        if model is None:
            return {"CANCELLED"}
        if settings.input_mode == "TEXT" and not settings.prompt.strip():
            self.report({"ERROR"}, "The prompt is empty: describe the object to generate.")
            return {"CANCELLED"}
        try:
            params, arrays, label = generate_params(settings)
        except sb.BadArrays as exc:
            return report_bad_input(self, exc)
        params["seed"] = next_seed(settings)
        params.update(output_params(settings, model))
        spec = {"task": "generate", "model": model, "params": params, "priority": 0}
        job = Job("generate", spec, f"{model}: {label}",
                  context={"cursor": tuple(context.scene.cursor.location), "count": int(settings.count),
                           "spacing": float(settings.spacing)})
        BRIDGE.submit(job, arrays)
        self.report({"INFO"}, f"Generating {settings.count} × {label} with {model} (seed {params['seed']})")
        return {"FINISHED"}


class LATENTFORGE_OT_randomize_seed(bpy.types.Operator):
    """Pick a new random seed"""

    bl_idname = "latentforge.randomize_seed"
    bl_label = "Randomize Seed"
    bl_options = {"REGISTER", "UNDO", "INTERNAL"}

    target: bpy.props.EnumProperty(items=[("generate", "Generate", ""), ("populate", "Populate", "")])

    def execute(self, context: bpy.types.Context) -> set[str]:
        import random

        settings = getattr(context.scene.latentforge, self.target)
        settings.seed = random.randint(0, 2**31 - 1 - 64 * 256)
        return {"FINISHED"}


CLASSES = (LATENTFORGE_OT_generate, LATENTFORGE_OT_randomize_seed)
