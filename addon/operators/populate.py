"""Populate Scene: many objects from rows of (prompt or category, count), scattered without overlaps."""

import itertools

import bpy
import numpy as np

from .. import placement
from .. import scene_builders as sb
from ..engine_bridge import BRIDGE
from ..jobs import Job
from .common import check_ready, next_seed, poll_connected, report_bad_input

_batch_numbers = itertools.count(1)


def _surface(obj: bpy.types.Object) -> placement.SurfaceSampler:
    vertices, faces = sb.mesh_arrays(obj)
    m = np.array(obj.matrix_world, dtype=np.float64)
    world = vertices.astype(np.float64) @ m[:3, :3].T + m[:3, 3]
    try:
        return placement.SurfaceSampler(world[faces])
    except ValueError as exc:
        raise sb.BadArrays(f"'{obj.name}': {exc}", "Pick a target with a floor-like (upward-facing) surface.") from None


def _collection_name() -> str:
    while True:
        name = f"Populate {next(_batch_numbers)}"
        if bpy.data.collections.get(name) is None:
            return name


class LATENTFORGE_OT_populate(bpy.types.Operator):
    """Generate every row and scatter the objects around the cursor or on the selected surface"""

    bl_idname = "latentforge.populate"
    bl_label = "Populate Scene"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return poll_connected(cls, "generate")

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.latentforge.populate
        model = check_ready(self, "generate", settings.model)
        if model is None:
            return {"CANCELLED"}
        rows = [r for r in settings.rows if r.count > 0]
        if not rows:
            self.report({"ERROR"}, "Add at least one row (a prompt or category and a count).")
            return {"CANCELLED"}
        for r in rows:
            if not (r.prompt if r.input_mode == "TEXT" else r.category).strip():
                self.report({"ERROR"}, "A row has an empty prompt or category.")
                return {"CANCELLED"}
        if settings.scale_min > settings.scale_max:
            self.report({"ERROR"}, "Scale Min is larger than Scale Max.")
            return {"CANCELLED"}
        cursor = tuple(context.scene.cursor.location)
        surface = None
        if settings.target == "SURFACE":
            target = context.active_object
            if target is None:
                self.report({"ERROR"}, "Target 'Selected Surface' needs an active mesh object.")
                return {"CANCELLED"}
            try:
                surface = _surface(target)
            except sb.BadArrays as exc:
                return report_bad_input(self, exc)
        seed = next_seed(settings)
        collection = _collection_name()
        batch_id = f"batch-{collection}"
        BRIDGE.populate_batches[batch_id] = {
            "id": batch_id, "collection": collection, "jobs": len(rows), "done": 0,
            "packer": placement.Packer(cursor, settings.radius, settings.spacing, seed=seed, surface=surface),
            "rng": np.random.default_rng(seed + 1), "rotate": bool(settings.rotate),
            "scale_min": float(settings.scale_min), "scale_max": float(settings.scale_max),
        }
        for i, row in enumerate(rows):
            variants = min(int(row.variants), int(row.count))
            params: dict = {"count": variants, "seed": seed + 1000 * i, "steps": int(settings.steps)}
            if row.input_mode == "TEXT":
                params["prompt"] = row.prompt.strip()
            else:
                params["category"] = row.category.strip()
            what = params.get("prompt") or params.get("category")
            spec = {"task": "generate", "model": model, "params": params, "priority": 0}
            job = Job("populate", spec, f"{model}: {row.count} × {what}",
                      context={"batch": batch_id, "count": int(row.count), "variants": variants, "cursor": cursor})
            BRIDGE.submit(job)
        total = sum(r.count for r in rows)
        self.report({"INFO"}, f"Populating {total} object(s) from {len(rows)} row(s) with {model}")
        return {"FINISHED"}


class LATENTFORGE_OT_populate_row_add(bpy.types.Operator):
    """Add a row (prompt or category, count)"""

    bl_idname = "latentforge.populate_row_add"
    bl_label = "Add Row"
    bl_options = {"REGISTER", "UNDO", "INTERNAL"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        context.scene.latentforge.populate.rows.add()
        return {"FINISHED"}


class LATENTFORGE_OT_populate_row_remove(bpy.types.Operator):
    """Remove this row"""

    bl_idname = "latentforge.populate_row_remove"
    bl_label = "Remove Row"
    bl_options = {"REGISTER", "UNDO", "INTERNAL"}

    index: bpy.props.IntProperty()

    def execute(self, context: bpy.types.Context) -> set[str]:
        rows = context.scene.latentforge.populate.rows
        if 0 <= self.index < len(rows):
            rows.remove(self.index)
        return {"FINISHED"}


CLASSES = (LATENTFORGE_OT_populate, LATENTFORGE_OT_populate_row_add, LATENTFORGE_OT_populate_row_remove)
