"""What each job's events do to the scene: live previews, final objects, clean-up.

Main thread only (called from the bridge's timer). Rules kept here:

- a preview is one points object per job, updated in place, in the "Latentforge
  Previews" collection; it is removed when the final object arrives, or on cancel/error;
- a result is built completely (data first, then the object, then linking) or not at
  all: whatever one result created is removed if any step fails;
- a job's objects go into its own collection (one per job, or per populate batch), made
  only when the first result arrives, and carry ``latentforge_*`` custom properties;
- the final insertion of a job is one undo step.
"""

from __future__ import annotations

import math
from typing import Any

import bpy
import numpy as np
from mathutils import Matrix, Vector

from . import placement
from . import scene_builders as sb

ROOT_COLLECTION = "Latentforge"
PREVIEW_COLLECTION = "Latentforge Previews"
PREVIEW_MATERIAL = "Latentforge Preview"


class _Created:
    """Objects and datablocks made while building one result, to undo on failure."""

    def __init__(self) -> None:
        self.objects: list[bpy.types.Object] = []
        self.data: list[bpy.types.ID] = []

    def rollback(self) -> None:
        sb.remove_objects(self.objects)
        for data in self.data:
            try:
                if data.users == 0:
                    sb.remove_data(data)
            except ReferenceError:
                pass


# ----------------------------------------------------------------------------- helpers

def _root() -> bpy.types.Collection:
    return sb.ensure_collection(ROOT_COLLECTION)


def job_collection(job) -> bpy.types.Collection:
    """The job's collection under "Latentforge" (created on first use)."""
    if job.collection:
        coll = bpy.data.collections.get(job.collection)
        if coll is not None:
            return coll
    short = (job.job_id or job.key)[:8]
    coll = sb.ensure_collection(f"{job.label} [{short}]", _root())
    job.collection = coll.name
    return coll


def _params_for_props(job) -> dict[str, Any]:
    params = dict(job.spec.get("params") or {})
    return {k: v for k, v in params.items() if k != "arrays"}


def tag_object(obj: bpy.types.Object, job, msg) -> None:
    """Custom properties that let the object be traced, refined or regenerated."""
    meta = msg.get("meta") or {}
    sb.set_custom_properties(obj, {
        "job_id": msg.job_id or job.job_id or "",
        "model": msg.get("model") or job.model,
        "task": job.task,
        "prompt": msg.get("prompt") or "",
        "seed": msg.get("seed") if isinstance(msg.get("seed"), int) else -1,
        "index": int(msg.get("index") or 0),
        "category": meta.get("category"),
        "guidance": meta.get("guidance"),   # the scale used, also when the model chose it
        "params": _params_for_props(job),
    })


def _object_name(job, msg) -> str:
    meta = msg.get("meta") or {}
    params = job.spec.get("params") or {}
    base = meta.get("category") or params.get("category") or msg.get("prompt") or params.get("prompt") or job.model
    return str(base)[:48]


def _build_data(name: str, msg, created: _Created) -> bpy.types.ID:
    """Mesh or point cloud data from a result's arrays."""
    kind, arrays = msg.get("kind"), msg.arrays
    if kind == "mesh":
        if "vertices" not in arrays or "faces" not in arrays:
            raise sb.BadArrays("A mesh result lacks its vertices or faces.")
        data = sb.build_mesh(name, arrays["vertices"], arrays["faces"], arrays.get("colors"))
        created.data.append(data)
        if len(data.polygons) <= 500_000:
            data.set_sharp_from_angle(angle=math.radians(35.0))
        return data
    if kind == "points":
        if "points" not in arrays:
            raise sb.BadArrays("A points result lacks its points.")
        data = sb.build_points(name, arrays["points"], arrays.get("colors"))
        created.data.append(data)
        return data
    raise sb.BadArrays(f"Cannot place a result of kind {kind!r} here.")


def _new_result_object(name: str, data: bpy.types.ID, coll: bpy.types.Collection,
                       matrix: Matrix, created: _Created) -> bpy.types.Object:
    # a point cloud is a PointCloud, or (on Blender without evaluated_geometry) a mesh without faces
    is_points = data.__class__.__name__ == "PointCloud" or (isinstance(data, bpy.types.Mesh) and not data.polygons)
    obj = (sb.new_points_object if is_points else sb.new_object)(name, data, coll, matrix)
    created.objects.append(obj)
    return obj


def _slot_matrix(job, index: int) -> Matrix:
    cursor = Vector(job.context.get("cursor", (0.0, 0.0, 0.0)))
    count = int(job.context.get("count") or job.expected or 1)
    offset = Vector(placement.row_offset(index, count, float(job.context.get("spacing", 2.5))))
    return Matrix.Translation(cursor + offset)


def _preview_collection() -> bpy.types.Collection:
    return sb.ensure_collection(PREVIEW_COLLECTION, _root())


def _preview_material() -> bpy.types.Material:
    """A light-blue material so a preview reads as "in progress" next to finished objects."""
    mat = bpy.data.materials.get(PREVIEW_MATERIAL)
    if mat is None:
        color = (0.35, 0.62, 1.0, 1.0)
        mat = bpy.data.materials.new(PREVIEW_MATERIAL)
        mat[sb.OWNED_PROP] = True
        mat.diffuse_color = color
        if mat.node_tree is None:
            mat.use_nodes = True
        bsdf = mat.node_tree.nodes.get("Principled BSDF")
        if bsdf is not None:
            bsdf.inputs["Base Color"].default_value = color
            bsdf.inputs["Emission Color"].default_value = color
            bsdf.inputs["Emission Strength"].default_value = 0.6
    return mat


def _preview_data(job, points) -> bpy.types.ID:
    data = sb.build_points(f"{job.label} (preview)", points, as_mesh=True)
    data.materials.append(_preview_material())
    return data


def _preview_matrix(job, index: int) -> Matrix:
    if job.purpose == "refine":
        src = bpy.data.objects.get(job.context.get("source", ""))
        if src is not None:
            return src.matrix_world.copy()
    if job.purpose == "populate":
        return Matrix.Translation(Vector(job.context.get("cursor", (0.0, 0.0, 0.0))))
    if job.purpose == "interpolate":
        return _interpolate_matrix(job, index)
    return _slot_matrix(job, index)


# ----------------------------------------------------------------------------- previews

def show_preview(bridge, job, msg) -> None:
    """Create or update (in place) the job's preview points."""
    arrays = msg.arrays
    points = arrays.get("points")
    if points is None:
        points = arrays.get("vertices")
    if points is None or len(points) == 0:
        return
    meta = msg.get("meta") or {}
    matrix = _preview_matrix(job, int(meta.get("index") or 0))
    obj = bpy.data.objects.get(job.preview) if job.preview else None
    if obj is None:
        data = _preview_data(job, points)
        try:
            obj = sb.new_points_object(f"{job.label} (preview)", data, _preview_collection(), matrix)
        except Exception:
            sb.remove_data(data)
            raise
        obj[sb.PREVIEW_PROP] = job.job_id or job.key
        job.preview = obj.name
        return
    if not sb.update_points_in_place(obj, points):
        sb.replace_object_data(obj, _preview_data(job, points))
    if obj.matrix_world != matrix:
        obj.matrix_world = matrix


def remove_preview(job) -> None:
    if job.preview:
        obj = bpy.data.objects.get(job.preview)
        if obj is not None:
            sb.remove_objects([obj])
        job.preview = None
    sb.remove_empty_collection(bpy.data.collections.get(PREVIEW_COLLECTION))


# ----------------------------------------------------------------------------- results

def add_result(bridge, job, msg) -> None:
    """Build one result into the scene, all or nothing."""
    created = _Created()
    try:
        handler = {"refine": _refine_result, "views": _views_result, "populate": _populate_result,
                   "interpolate": _interpolate_result}.get(job.purpose, _generate_result)
        if msg.get("kind") == "images" and job.purpose != "views":
            handler = _views_result
        handler(bridge, job, msg, created)
    except Exception:
        created.rollback()
        raise
    job.objects.extend(o.name for o in created.objects)


def _generate_result(bridge, job, msg, created: _Created) -> None:
    index = int(msg.get("index") or 0)
    name = _object_name(job, msg)
    data = _build_data(name, msg, created)
    matrix = _slot_matrix(job, index) @ sb.as_matrix(msg.get("transform"))
    obj = _new_result_object(name, data, job_collection(job), matrix, created)
    tag_object(obj, job, msg)


def _refine_result(bridge, job, msg, created: _Created) -> None:
    src = bpy.data.objects.get(job.context.get("source", ""))
    name = job.context.get("source_name") or _object_name(job, msg)
    data = _build_data(name, msg, created)
    if src is None:
        # The original was deleted meanwhile: keep the result where it was.
        matrix = Matrix(job.context.get("matrix_world")) if job.context.get("matrix_world") else Matrix.Identity(4)
        obj = _new_result_object(name, data, job_collection(job), matrix, created)
        tag_object(obj, job, msg)
        return
    src_data = src.data
    if src_data is not None and hasattr(src_data, "materials") and hasattr(data, "materials"):
        for mat in src_data.materials:
            data.materials.append(mat)
    collections = list(src.users_collection) or [job_collection(job)]
    obj = bpy.data.objects.new(name, data)
    created.objects.append(obj)
    for coll in collections:
        coll.objects.link(obj)
    _copy_transform(src, obj)
    for i, slot in enumerate(src.material_slots):
        if slot.link == "OBJECT" and i < len(obj.material_slots):
            obj.material_slots[i].link = "OBJECT"
            obj.material_slots[i].material = slot.material
    tag_object(obj, job, msg)
    original_name = src.name
    if job.context.get("mode") == "REPLACE":
        sb.remove_objects([src], with_data=True)
        obj.name = original_name
    else:
        src.name = original_name + " (original)"
        obj.name = original_name
        src.hide_set(True)
        src.hide_render = True
        src["latentforge_refined_into"] = obj.name
        obj["latentforge_source"] = src.name


def _copy_transform(src: bpy.types.Object, obj: bpy.types.Object) -> None:
    """Same parent and transform channels (exact values, not a decomposed matrix), same animation."""
    obj.parent = src.parent
    obj.parent_type = src.parent_type
    obj.parent_bone = src.parent_bone
    obj.matrix_parent_inverse = src.matrix_parent_inverse.copy()
    obj.rotation_mode = src.rotation_mode
    for attr in ("location", "rotation_euler", "rotation_quaternion", "rotation_axis_angle", "scale",
                 "delta_location", "delta_rotation_euler", "delta_rotation_quaternion", "delta_scale"):
        setattr(obj, attr, getattr(src, attr))
    if src.animation_data is not None and src.animation_data.action is not None:
        obj.animation_data_create().action = src.animation_data.action


def _interpolate_matrix(job, index: int) -> Matrix:
    """Shape ``index`` of an interpolation: in the row between the two objects, sized between them."""
    ctx = job.context
    count = int(ctx.get("count") or job.expected or 1)
    slots = placement.interpolation_slots(ctx.get("start", (0.0, 0.0, 0.0)), ctx.get("end", (0.0, 0.0, 0.0)),
                                          float(ctx.get("size_a", 1.0)), float(ctx.get("size_b", 1.0)), count)
    location, scale = slots[min(max(index, 0), count - 1)]
    return Matrix.Translation(Vector(location)) @ Matrix.Scale(scale, 4)


def _interpolate_result(bridge, job, msg, created: _Created) -> None:
    """One in-between shape (canonical frame from the engine), placed by ``_interpolate_matrix``."""
    index = int(msg.get("index") or 0)
    name = f"{job.context.get('source_a', 'A')} to {job.context.get('source_b', 'B')} {index:02d}"[:60]
    data = _build_data(name, msg, created)
    obj = _new_result_object(name, data, job_collection(job), _interpolate_matrix(job, index), created)
    tag_object(obj, job, msg)
    meta = msg.get("meta") or {}
    if isinstance(meta.get("weight"), (int, float)):
        obj["latentforge_weight"] = float(meta["weight"])


def _views_result(bridge, job, msg, created: _Created) -> None:
    arrays = msg.arrays
    images, poses = arrays.get("images"), arrays.get("poses")
    if images is None or poses is None or len(images) != len(poses):
        raise sb.BadArrays("A views result needs as many poses as images.")
    meta = msg.get("meta") or {}
    fov = float(meta.get("fov_deg") or job.context.get("fov_deg") or 40.0)
    src = bpy.data.objects.get(job.context.get("source") or "")
    base = src.matrix_world.copy() if src is not None else Matrix.Translation(
        Vector(job.context.get("cursor", (0.0, 0.0, 0.0))))
    coll = job_collection(job)
    label = src.name if src is not None else "image"
    for k in range(len(images)):
        img = sb.build_image(f"{label} view {k}", images[k])
        created.data.append(img)
        pose = sb.as_matrix(poses[k])
        c2w = base @ pose
        h, w = images[k].shape[:2]
        cam_data = sb.build_camera(f"{label} view {k}", fov, w / h)
        created.data.append(cam_data)
        cam = sb.new_object(f"{label} view {k} camera", cam_data, coll, c2w)
        created.objects.append(cam)
        plane_data = sb.build_image_plane(f"{label} view {k}", img)
        created.data.append(plane_data)
        distance = 0.3 * max(Vector(pose.translation).length, 1e-3)
        plane = sb.new_object(f"{label} view {k}", plane_data, coll,
                              sb.view_plane_matrix(c2w, fov, distance, w / h))
        created.objects.append(plane)
        for obj in (cam, plane):
            tag_object(obj, job, msg)
            obj["latentforge_view"] = k


def _populate_result(bridge, job, msg, created: _Created) -> None:
    batch = bridge.populate_batches.get(job.context.get("batch", ""))
    if batch is None:
        raise sb.BadArrays("The populate batch of this job is gone.", "Run Populate Scene again.")
    index = int(msg.get("index") or 0)
    variants = max(1, int(job.context.get("variants", 1)))
    placements = [p for p in range(int(job.context.get("count", 1))) if p % variants == index]
    name = _object_name(job, msg)
    data = _build_data(name, msg, created)
    arrays = msg.arrays
    pts = arrays["vertices"] if msg.get("kind") == "mesh" else arrays["points"]
    # Any layout transform from the engine is ignored: Populate places objects itself.
    bmin, bmax = pts.min(axis=0), pts.max(axis=0)
    packer: placement.Packer = batch["packer"]
    rng: np.random.Generator = batch["rng"]
    coll = bpy.data.collections.get(batch["collection"]) or sb.ensure_collection(batch["collection"], _root())
    batch["collection"] = coll.name
    for _ in placements:
        scale = float(rng.uniform(batch["scale_min"], batch["scale_max"]))
        angle = float(rng.uniform(0.0, 2 * math.pi)) if batch["rotate"] else 0.0
        fp_min, fp_max = placement.rotated_footprint(bmin, bmax, scale, angle)
        spot = packer.place(fp_min, fp_max)
        if spot is None:
            batch["unplaced"] = batch.get("unplaced", 0) + 1
            continue
        z = spot[2] - bmin[2] * scale
        matrix = (Matrix.Translation((spot[0], spot[1], z)) @ Matrix.Rotation(angle, 4, "Z")
                  @ Matrix.Scale(scale, 4))
        obj = _new_result_object(name, data, coll, matrix, created)  # shares ``data``: linked duplicates
        tag_object(obj, job, msg)
        obj["latentforge_batch"] = batch["id"]
    if not created.objects:
        # Nothing fitted: do not leave an unused datablock behind.
        created.rollback()
        created.data.clear()


def finish(bridge, job) -> None:
    """The job's last result is in: drop the preview and make the insertion one undo step."""
    remove_preview(job)
    batch = bridge.populate_batches.get(job.context.get("batch", "")) if job.purpose == "populate" else None
    if batch is not None:
        batch["done"] = batch.get("done", 0) + 1
        if batch["done"] >= batch["jobs"] and batch.get("unplaced"):
            bridge.report("WARNING", f"Populate: {batch['unplaced']} object(s) did not fit without overlaps.",
                          "Enlarge the area radius or reduce the spacing, scale or counts.")
    _undo_push(f"Latentforge: {job.label}")


def discard(bridge, job, remove_results: bool = False) -> None:
    """Cancel / error / lost connection: remove the preview (and, if asked, the job's objects)."""
    remove_preview(job)
    if remove_results and job.objects:
        sb.remove_objects([o for o in (bpy.data.objects.get(n) for n in job.objects) if o is not None])
        job.objects.clear()
    if job.collection:
        sb.remove_empty_collection(bpy.data.collections.get(job.collection))
    sb.remove_empty_collection(bpy.data.collections.get(ROOT_COLLECTION))


def _undo_push(message: str) -> None:
    try:
        if bpy.ops.ed.undo_push.poll():
            bpy.ops.ed.undo_push(message=message)
    except RuntimeError:
        pass  # no undo stack in this context (e.g. some headless setups)
