"""Property groups holding each panel's settings (stored per scene, saved with the file)."""

import bpy
from bpy.props import (BoolProperty, CollectionProperty, EnumProperty, FloatProperty, IntProperty,
                       PointerProperty, StringProperty)

from .engine_bridge import BRIDGE

# Blender keeps only pointers to enum item strings: the lists must outlive the callback.
_ITEM_CACHE: dict[str, list[tuple[str, str, str]]] = {}
_NONE = ("NONE", "No Model", "No installed model can do this; connect to an engine or install a model")


def _model_items_for(task: str):
    def items(_self, _context):
        entries = BRIDGE.model_entries(task)
        result = [(m["name"], m["name"].title(), _describe(m)) for m in entries] or [_NONE]
        _ITEM_CACHE[task] = result
        return result
    return items


def _describe(entry: dict) -> str:
    kinds = ", ".join(entry.get("kinds") or [])
    return f"{entry['name']} model ({kinds})" if kinds else f"{entry['name']} model"


def model_categories(model: str) -> list[str]:
    """Categories a model reports in ``models`` (empty when it reports none)."""
    for m in BRIDGE.models:
        if m.get("name") == model:
            return [str(c) for c in (m.get("categories") or [])]
    return []


def offers_mesh_output(model: str) -> bool:
    """Whether ``model`` makes point clouds that the engine can also turn into meshes (``output``)."""
    for m in BRIDGE.models:
        if m.get("name") == model:
            kinds = m.get("kinds") or []
            return "points" in kinds and "mesh" in kinds
    return False


_OUTPUT_ITEMS = [("POINTS", "Points", "A point cloud, as the model makes it"),
                 ("MESH", "Mesh", "A watertight mesh reconstructed from the points by the engine")]


def output_params(settings, model: str) -> dict:
    """``{"output": "mesh", "mesh_resolution": N}`` when the user asked for meshes and ``model`` can."""
    if getattr(settings, "output", "POINTS") == "MESH" and offers_mesh_output(model):
        return {"output": "mesh", "mesh_resolution": int(settings.mesh_resolution)}
    return {}


def _interp_category_items(self, _context):
    model = getattr(self, "model", "")
    cats = model_categories(model)
    result = [("NONE", "None", "Unconditional")] + [(c, c.replace("_", " ").title(), "") for c in cats]
    _ITEM_CACHE[f"interp-categories:{model}"] = result
    return result


def _category_items(self, _context):
    model = getattr(self, "model", "")
    cats = model_categories(model)
    result = [(c, c.replace("_", " ").title(), "") for c in cats] or [("NONE", "Type Below", "")]
    _ITEM_CACHE[f"categories:{model}"] = result
    return result


_INPUT_ITEMS = [("TEXT", "Text", "Describe the object"),
                ("CATEGORY", "Category", "Pick one of the model's categories"),
                ("IMAGE", "Image", "Use an image of the object")]


def _output_property(description: str):
    """Points or a reconstructed mesh, for point-cloud models (Generate, Refine, Interpolate)."""
    return EnumProperty(name="Output", items=_OUTPUT_ITEMS, default="POINTS", description=description)


def _mesh_resolution_property(description: str):
    return IntProperty(name="Mesh Resolution", default=64, min=32, max=128, description=description)


class LF_GenerateSettings(bpy.types.PropertyGroup):
    model: EnumProperty(name="Model", items=_model_items_for("generate"))
    input_mode: EnumProperty(name="Input", items=_INPUT_ITEMS, default="CATEGORY")
    prompt: StringProperty(name="Prompt", default="a chair")
    category: EnumProperty(name="Category", items=_category_items)
    category_text: StringProperty(name="Category", default="chair",
                                  description="Category name (when the engine does not list its categories)")
    image_path: StringProperty(name="Image", subtype="FILE_PATH")
    count: IntProperty(name="Count", default=1, min=1, max=64)
    seed: IntProperty(name="Seed", default=0, min=0)
    randomize_seed: BoolProperty(name="Random Seed", default=True,
                                 description="Pick a new seed every time (the seed used is stored on the objects)")
    steps: IntProperty(name="Steps", default=25, min=1, max=1000)
    custom_guidance: BoolProperty(name="Custom Guidance", default=False,
                                  description="Set the guidance scale yourself; off: the model's own default "
                                              "(chosen when it was trained)")
    guidance: FloatProperty(name="Guidance", default=1.5, min=0.0, max=50.0,
                            description="Classifier-free guidance scale: higher follows the prompt more, "
                                        "with less variety (1 = none)")
    spacing: FloatProperty(name="Spacing", default=2.5, min=0.0, subtype="DISTANCE",
                           description="Distance between results when Count > 1")
    output: _output_property("Point-cloud models: keep the points or get a reconstructed mesh")
    mesh_resolution: _mesh_resolution_property("Grid resolution of the reconstructed mesh")


class LF_RefineSettings(bpy.types.PropertyGroup):
    model: EnumProperty(name="Model", items=_model_items_for("refine"))
    strength: FloatProperty(name="Strength", default=0.5, min=0.0, max=1.0, subtype="FACTOR",
                            description="How far from the original the result may go")
    prompt: StringProperty(name="Prompt", description="Optional: what the object should become")
    steps: IntProperty(name="Steps", default=25, min=1, max=1000)
    mode: EnumProperty(name="Original", items=[
        ("HIDE", "Keep Hidden", "Keep the original, hidden, to compare"),
        ("REPLACE", "Replace", "Delete the original")], default="HIDE")
    output: _output_property("Point-cloud models: keep the points or get a reconstructed mesh")
    mesh_resolution: _mesh_resolution_property("Grid resolution of the reconstructed mesh")


class LF_InterpolateSettings(bpy.types.PropertyGroup):
    model: EnumProperty(name="Model", items=_model_items_for("interpolate"))
    count: IntProperty(name="Count", default=5, min=2, max=32,
                       description="Shapes to make, from the first object's shape to the second's")
    category: EnumProperty(name="Category", items=_interp_category_items,
                           description="Optional condition (None: unconditional)")
    steps: IntProperty(name="Steps", default=25, min=1, max=1000)
    seed: IntProperty(name="Seed", default=0, min=0)
    randomize_seed: BoolProperty(name="Random Seed", default=True)
    output: _output_property("Keep the points or get reconstructed meshes")
    mesh_resolution: _mesh_resolution_property("Grid resolution of the reconstructed meshes")


class LF_ViewPose(bpy.types.PropertyGroup):
    polar: FloatProperty(name="Polar", default=1.0472, min=0.0, max=3.14159, subtype="ANGLE",
                         description="Angle from +Z (up)")
    azimuth: FloatProperty(name="Azimuth", default=0.0, subtype="ANGLE")
    radius: FloatProperty(name="Distance", default=3.0, min=0.1, subtype="DISTANCE")


class LF_ViewsSettings(bpy.types.PropertyGroup):
    model: EnumProperty(name="Model", items=_model_items_for("views"))
    source: EnumProperty(name="From", items=[
        ("OBJECT", "Selected Object", "Render the active object's mesh as the input view"),
        ("IMAGE", "Image", "An image file of the object")], default="OBJECT")
    image_path: StringProperty(name="Image", subtype="FILE_PATH")
    preset: EnumProperty(name="Poses", items=[
        ("ORBIT_4", "Orbit ×4", "Four views around the object"),
        ("ORBIT_8", "Orbit ×8", "Eight views around the object"),
        ("CUSTOM", "Custom", "The poses listed below")], default="ORBIT_4")
    elevation: FloatProperty(name="Elevation", default=0.5236, min=-1.5, max=1.5, subtype="ANGLE",
                             description="Camera height above the horizon for orbit presets")
    radius: FloatProperty(name="Distance", default=3.0, min=0.1, subtype="DISTANCE")
    poses: CollectionProperty(type=LF_ViewPose)
    steps: IntProperty(name="Steps", default=25, min=1, max=1000)
    guidance: FloatProperty(name="Guidance", default=3.0, min=0.0, max=50.0)


class LF_PopulateRow(bpy.types.PropertyGroup):
    input_mode: EnumProperty(name="Input", items=_INPUT_ITEMS[:2], default="CATEGORY")
    prompt: StringProperty(name="Prompt", default="a chair")
    category: StringProperty(name="Category", default="chair")
    count: IntProperty(name="Count", default=3, min=1, max=256, description="Objects to place")
    variants: IntProperty(name="Variants", default=1, min=1, max=64,
                          description="Distinct shapes to generate; the rest are linked duplicates")


class LF_PopulateSettings(bpy.types.PropertyGroup):
    model: EnumProperty(name="Model", items=_model_items_for("generate"))
    rows: CollectionProperty(type=LF_PopulateRow)
    target: EnumProperty(name="Target", items=[
        ("CURSOR", "Around Cursor", "A disc around the 3D cursor"),
        ("SURFACE", "Selected Surface", "The upward-facing surface of the active object")], default="CURSOR")
    radius: FloatProperty(name="Radius", default=6.0, min=0.1, subtype="DISTANCE")
    spacing: FloatProperty(name="Spacing", default=0.3, min=0.0, subtype="DISTANCE",
                           description="Minimum gap between objects' bounds")
    rotate: BoolProperty(name="Random Rotation", default=True, description="Random rotation about Z")
    scale_min: FloatProperty(name="Scale Min", default=0.8, min=0.01)
    scale_max: FloatProperty(name="Scale Max", default=1.2, min=0.01)
    seed: IntProperty(name="Seed", default=0, min=0)
    randomize_seed: BoolProperty(name="Random Seed", default=True)
    steps: IntProperty(name="Steps", default=25, min=1, max=1000)


class LF_SceneSettings(bpy.types.PropertyGroup):
    generate: PointerProperty(type=LF_GenerateSettings)
    refine: PointerProperty(type=LF_RefineSettings)
    interpolate: PointerProperty(type=LF_InterpolateSettings)
    views: PointerProperty(type=LF_ViewsSettings)
    populate: PointerProperty(type=LF_PopulateSettings)
    show_history: BoolProperty(name="History", default=False)


CLASSES = (LF_GenerateSettings, LF_RefineSettings, LF_InterpolateSettings, LF_ViewPose, LF_ViewsSettings, LF_PopulateRow,
           LF_PopulateSettings, LF_SceneSettings)


def register() -> None:
    bpy.types.Scene.latentforge = PointerProperty(type=LF_SceneSettings)


def unregister() -> None:
    del bpy.types.Scene.latentforge
