"""numpy arrays -> Blender data: meshes, point clouds, images, image planes, cameras.

Main thread only. Imports nothing but bpy, mathutils, numpy and (when there) the add-on's
copy of engine/errors.py, so scripts (the ingest benchmark) can load this file on its own.
Every builder checks its arrays *before* it creates any datablock and removes what it made
if Blender refuses something halfway, so bad input never leaves half an object behind.

Speed: large arrays go through the generic attribute API (``position``,
``.corner_vert``) with ``foreach_set`` on float32/int32 buffers, which copies memory in
one call instead of going through per-element RNA; only face offsets and edges are left
to Blender (``polygons.loop_start`` and ``update(calc_edges=True)``).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import bpy
import numpy as np
from mathutils import Matrix, Vector

try:  # the add-on's copy of engine/errors.py
    from ._link.errors import LatentforgeError
except ImportError:  # this file loaded on its own (scripts/bench_ingest.py)
    LatentforgeError = Exception

PREVIEW_PROP = "latentforge_preview"
OWNED_PROP = "latentforge_owned"  # on materials/images we made, so clean-up never deletes the user's
POINT_RADIUS = 0.012
_POINTS_GROUP = "Latentforge Points"


class BadArrays(LatentforgeError):
    """Arrays (or an object, an image) that cannot become or come from Blender data; carries advice."""

    code = "input.invalid"

    def __init__(self, message: str, advice: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.advice = advice or "Regenerate the result, or report the job id if it keeps happening."


# ----------------------------------------------------------------------------- checks

def _float3(name: str, arr: Any) -> np.ndarray:
    a = np.asarray(arr)
    if a.ndim != 2 or a.shape[1] != 3:
        raise BadArrays(f"{name} must be an N×3 array, got shape {tuple(a.shape)}.")
    a = np.ascontiguousarray(a, dtype=np.float32)
    if not np.isfinite(a).all():
        raise BadArrays(f"{name} holds NaN or infinite coordinates.")
    return a


def check_mesh_arrays(vertices: Any, faces: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return (float32 N×3, int32 M×3) ready for ``foreach_set``; drop degenerate triangles.

    Raises ``BadArrays`` for wrong shapes, NaN, empty geometry or out-of-range indices.
    """
    v = _float3("vertices", vertices)
    f = np.asarray(faces)
    if f.ndim != 2 or f.shape[1] != 3 or f.dtype.kind not in "iu":
        raise BadArrays(f"faces must be an M×3 integer array, got {f.dtype} {tuple(f.shape)}.")
    if len(v) == 0 or len(f) == 0:
        raise BadArrays("The mesh has no vertices or no faces.",
                        "Pick an object with faces, or regenerate the result.")
    if f.min() < 0 or f.max() >= len(v):
        raise BadArrays(f"faces index vertices outside 0..{len(v) - 1}.")
    f = np.ascontiguousarray(f, dtype=np.int32)
    # A triangle that repeats a vertex is invalid in Blender (validate() would delete it).
    degenerate = (f[:, 0] == f[:, 1]) | (f[:, 1] == f[:, 2]) | (f[:, 0] == f[:, 2])
    if degenerate.any():
        f = np.ascontiguousarray(f[~degenerate])
        if len(f) == 0:
            raise BadArrays("Every face of the mesh is degenerate.")
    return v, f


def _colors_u8(colors: Any, n: int) -> np.ndarray | None:
    if colors is None:
        return None
    c = np.asarray(colors)
    if c.ndim != 2 or c.shape[0] != n or c.shape[1] not in (3, 4):
        raise BadArrays(f"colors must be N×3 or N×4 for {n} elements, got {tuple(c.shape)}.")
    if c.dtype != np.uint8:
        c = np.clip(c * (255.0 if c.dtype.kind == "f" else 1.0), 0, 255).astype(np.uint8)
    if c.shape[1] == 3:
        c = np.concatenate([c, np.full((n, 1), 255, np.uint8)], axis=1)
    return c


# ----------------------------------------------------------------------------- meshes

def build_mesh(name: str, vertices: Any, faces: Any, colors: Any = None) -> bpy.types.Mesh:
    """A triangle mesh from vertices (N×3) and faces (M×3); optional u8 vertex colors."""
    v, f = check_mesh_arrays(vertices, faces)
    c = _colors_u8(colors, len(v))
    mesh = bpy.data.meshes.new(name)
    try:
        mesh.vertices.add(len(v))
        mesh.loops.add(3 * len(f))
        mesh.polygons.add(len(f))
        mesh.attributes["position"].data.foreach_set("vector", v.ravel())
        mesh.attributes[".corner_vert"].data.foreach_set("value", f.ravel())
        mesh.polygons.foreach_set("loop_start", np.arange(0, 3 * len(f), 3, dtype=np.int32))
        # Edges are derived from the faces; nothing else needs recomputing (no validate()).
        mesh.update(calc_edges=True)
        if c is not None:
            attr = mesh.color_attributes.new("Col", "BYTE_COLOR", "POINT")
            attr.data.foreach_set("color_srgb", (c.astype(np.float32) / 255.0).ravel())
            mesh.color_attributes.active_color = attr
    except Exception:
        bpy.data.meshes.remove(mesh)
        raise
    return mesh


def build_vertex_mesh(name: str, points: np.ndarray) -> bpy.types.Mesh:
    """A mesh of loose vertices (no edges or faces), e.g. as input to Mesh to Points."""
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(points))
    mesh.attributes["position"].data.foreach_set("vector", points.ravel())
    mesh.update()
    return mesh


def mesh_arrays(obj: bpy.types.Object, depsgraph: bpy.types.Depsgraph | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The object's evaluated surface as triangles in its own local coordinates.

    Modifiers are applied (what the user sees) but not the object transform, so the
    engine works in object space and the result can reuse the object's transform.
    Raises ``BadArrays`` for objects without faces.
    """
    if obj.type not in {"MESH", "CURVE", "SURFACE", "META", "FONT"}:
        raise BadArrays(f"'{obj.name}' is a {obj.type.lower()} object, not a mesh.",
                        "Select mesh objects (or convert the object to a mesh first).")
    depsgraph = depsgraph or bpy.context.evaluated_depsgraph_get()
    evaluated = obj.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    try:
        mesh.calc_loop_triangles()
        n_v, n_t = len(mesh.vertices), len(mesh.loop_triangles)
        if n_t == 0:
            raise BadArrays(f"'{obj.name}' has no faces ({n_v} vertices).",
                            "Refine and views need a surface: select an object with faces.")
        vertices = np.empty(n_v * 3, np.float32)
        mesh.attributes["position"].data.foreach_get("vector", vertices)
        faces = np.empty(n_t * 3, np.int32)
        mesh.loop_triangles.foreach_get("vertices", faces)
    finally:
        evaluated.to_mesh_clear()
    return vertices.reshape(-1, 3), faces.reshape(-1, 3)


# ------------------------------------------------------------------------ point clouds

def pointclouds_supported() -> bool:
    """Real PointCloud datablocks need ``bpy.data.pointclouds`` and evaluated geometry access (4.3+)."""
    return hasattr(bpy.data, "pointclouds") and hasattr(bpy.types.Object, "evaluated_geometry")


def _points_node_group() -> bpy.types.NodeTree:
    """Geometry Nodes group: Mesh to Points, then Set Material (radius and material are inputs)."""
    group = bpy.data.node_groups.get(_POINTS_GROUP)
    if group is not None and "Material" in group.interface.items_tree:
        return group
    group = bpy.data.node_groups.new(_POINTS_GROUP, "GeometryNodeTree")
    group.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    radius = group.interface.new_socket("Radius", in_out="INPUT", socket_type="NodeSocketFloat")
    radius.default_value = POINT_RADIUS
    radius.min_value = 0.0
    group.interface.new_socket("Material", in_out="INPUT", socket_type="NodeSocketMaterial")
    group.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    g_in = group.nodes.new("NodeGroupInput")
    g_out = group.nodes.new("NodeGroupOutput")
    to_points = group.nodes.new("GeometryNodeMeshToPoints")
    set_mat = group.nodes.new("GeometryNodeSetMaterial")
    g_in.location, to_points.location, set_mat.location, g_out.location = (-300, 0), (0, 0), (200, 0), (400, 0)
    group.links.new(g_in.outputs["Geometry"], to_points.inputs["Mesh"])
    group.links.new(g_in.outputs["Radius"], to_points.inputs["Radius"])
    group.links.new(to_points.outputs["Points"], set_mat.inputs["Geometry"])
    group.links.new(g_in.outputs["Material"], set_mat.inputs["Material"])
    group.links.new(set_mat.outputs["Geometry"], g_out.inputs["Geometry"])
    return group


def _set_points_modifier(obj: bpy.types.Object, radius: float) -> None:
    mod = obj.modifiers.get("Latentforge Points") or obj.modifiers.new("Latentforge Points", "NODES")
    mod.node_group = _points_node_group()
    items = mod.node_group.interface.items_tree
    mod[items["Radius"].identifier] = float(radius)
    materials = getattr(obj.data, "materials", None)
    if materials and materials[0] is not None:
        # Mesh to Points drops face materials: hand the data's first material to Set Material.
        mod[items["Material"].identifier] = materials[0]


def _new_pointcloud(name: str, points: np.ndarray, radius: float) -> bpy.types.PointCloud:
    """A PointCloud datablock with ``len(points)`` points.

    The Python API cannot resize a point cloud, so the points are made by evaluating a
    Mesh to Points node on a scratch vertex mesh and copying the evaluated point cloud
    into the file; the scratch object and mesh are removed before returning.
    """
    scratch_mesh = build_vertex_mesh(name + " (scratch)", points)
    scratch = bpy.data.objects.new(name + " (scratch)", scratch_mesh)
    scene_collection = bpy.context.scene.collection
    scene_collection.objects.link(scratch)
    try:
        _set_points_modifier(scratch, radius)
        depsgraph = bpy.context.evaluated_depsgraph_get()
        depsgraph.update()
        geometry = scratch.evaluated_get(depsgraph).evaluated_geometry()
        evaluated = geometry.pointcloud
        if evaluated is None or len(evaluated.points) != len(points):
            raise BadArrays("Blender did not produce the expected point cloud.")
        cloud = evaluated.copy()
        cloud.name = name
    finally:
        bpy.data.objects.remove(scratch)
        bpy.data.meshes.remove(scratch_mesh)
    return cloud


def _set_point_colors(data: bpy.types.ID, colors: np.ndarray | None) -> None:
    if colors is None:
        return
    attr = data.color_attributes.get("Col") or data.color_attributes.new("Col", "BYTE_COLOR", "POINT")
    attr.data.foreach_set("color_srgb", (colors.astype(np.float32) / 255.0).ravel())


def build_points(name: str, points: Any, colors: Any = None, radius: float = POINT_RADIUS,
                 as_mesh: bool = False) -> bpy.types.ID:
    """Point cloud data: a PointCloud where supported, else (or with ``as_mesh``) a vertex mesh.

    ``as_mesh`` suits live previews: a vertex mesh is made without evaluating the scene's
    depsgraph (a PointCloud is not), so creating it costs a timer tick almost nothing.
    Give either to ``new_points_object``.
    """
    p = _float3("points", points)
    if len(p) == 0:
        raise BadArrays("The point cloud is empty.")
    c = _colors_u8(colors, len(p))
    if pointclouds_supported() and not as_mesh:
        data = _new_pointcloud(name, p, radius)
    else:
        data = build_vertex_mesh(name, p)
    try:
        _set_point_colors(data, c)
    except Exception:
        remove_data(data)
        raise
    return data


def new_points_object(name: str, data: bpy.types.ID, collection: bpy.types.Collection,
                      matrix: Matrix | None = None, radius: float = POINT_RADIUS) -> bpy.types.Object:
    """Object for ``build_points`` data; a vertex mesh gets the Geometry Nodes points modifier."""
    obj = new_object(name, data, collection, matrix)
    if isinstance(data, bpy.types.Mesh):
        _set_points_modifier(obj, radius)
    return obj


def update_points_in_place(obj: bpy.types.Object, points: Any, colors: Any = None) -> bool:
    """Move the points of a points object without making new data when the count is unchanged.

    Returns False when the count differs (the caller then swaps in ``build_points`` data).
    """
    p = _float3("points", points)
    data = obj.data
    n = len(data.points) if hasattr(data, "points") else len(data.vertices)
    if n != len(p):
        return False
    data.attributes["position"].data.foreach_set("vector", p.ravel())
    if colors is not None:
        _set_point_colors(data, _colors_u8(colors, len(p)))
    data.update_tag()
    obj.update_tag()
    return True


def replace_object_data(obj: bpy.types.Object, data: bpy.types.ID) -> None:
    """Swap an object's data and free the old block when nothing else uses it."""
    old = obj.data
    obj.data = data
    if old is not None and old.users == 0:
        remove_data(old)


# ----------------------------------------------------------------------------- images

def build_image(name: str, rgba: Any) -> bpy.types.Image:
    """An image datablock from u8 H×W×4 (top row first), packed so it is saved in the .blend."""
    a = np.asarray(rgba)
    if a.ndim != 3 or a.shape[2] not in (3, 4) or a.shape[0] == 0 or a.shape[1] == 0:
        raise BadArrays(f"An image must be H×W×4, got shape {tuple(a.shape)}.")
    if a.shape[2] == 3:
        a = np.concatenate([a, np.full(a.shape[:2] + (1,), 255, a.dtype)], axis=2)
    h, w = a.shape[:2]
    scale = 1.0 / 255.0 if a.dtype == np.uint8 else 1.0
    # Blender stores rows bottom-up.
    pixels = np.ascontiguousarray(a[::-1], dtype=np.float32) * np.float32(scale)
    image = bpy.data.images.new(name, w, h, alpha=True)
    image[OWNED_PROP] = True
    try:
        image.pixels.foreach_set(pixels.ravel())
        image.pack()
    except Exception:
        bpy.data.images.remove(image)
        raise
    return image


def image_pixels(image: bpy.types.Image) -> np.ndarray:
    """u8 H×W×4, top row first, from an image datablock (e.g. a loaded input image)."""
    w, h = image.size
    if w == 0 or h == 0:
        raise BadArrays(f"Image '{image.name}' has no pixels (missing file?).", "Pick an existing image file.")
    buf = np.empty(w * h * 4, np.float32)
    image.pixels.foreach_get(buf)
    return np.ascontiguousarray((np.clip(buf, 0, 1) * 255 + 0.5).astype(np.uint8).reshape(h, w, 4)[::-1])


def _image_material(name: str, image: bpy.types.Image) -> bpy.types.Material:
    mat = bpy.data.materials.new(name)
    mat[OWNED_PROP] = True
    if mat.node_tree is None:  # before Blender 5.0 new materials have no node tree yet
        mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    nodes.clear()
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = image
    emit = nodes.new("ShaderNodeEmission")
    out = nodes.new("ShaderNodeOutputMaterial")
    tex.location, emit.location, out.location = (-400, 0), (-100, 0), (150, 0)
    links.new(tex.outputs["Color"], emit.inputs["Color"])
    links.new(emit.outputs["Emission"], out.inputs["Surface"])
    nodes.active = tex  # Workbench's texture colour mode shows the active image node
    return mat


def build_image_plane(name: str, image: bpy.types.Image) -> bpy.types.Mesh:
    """A unit-height quad in XY (normal +Z) with the image's aspect ratio, UVs and material."""
    w, h = image.size
    aspect = w / h if h else 1.0
    hw, hh = 0.5 * aspect, 0.5
    verts = np.array([[-hw, -hh, 0], [hw, -hh, 0], [hw, hh, 0], [-hw, hh, 0]], np.float32)
    mesh = bpy.data.meshes.new(name)
    try:
        mesh.vertices.add(4)
        mesh.loops.add(4)
        mesh.polygons.add(1)
        mesh.attributes["position"].data.foreach_set("vector", verts.ravel())
        mesh.attributes[".corner_vert"].data.foreach_set("value", np.arange(4, dtype=np.int32))
        mesh.polygons.foreach_set("loop_start", np.zeros(1, np.int32))
        mesh.update(calc_edges=True)
        uv = mesh.uv_layers.new(name="UVMap")
        uv.data.foreach_set("uv", np.array([0, 0, 1, 0, 1, 1, 0, 1], np.float32))
        mesh.materials.append(_image_material(name, image))
    except Exception:
        bpy.data.meshes.remove(mesh)
        raise
    return mesh


def build_camera(name: str, fov_deg: float, aspect: float = 1.0) -> bpy.types.Camera:
    """A perspective camera with the given field of view along its larger side."""
    cam = bpy.data.cameras.new(name)
    cam.sensor_fit = "AUTO"
    cam.angle = math.radians(float(fov_deg))
    cam.display_size = 0.2
    return cam


def view_plane_matrix(c2w: Matrix, fov_deg: float, distance: float, aspect: float = 1.0) -> Matrix:
    """Place a unit-height plane ``distance`` in front of a camera, filling its view, facing it."""
    height = 2.0 * distance * math.tan(math.radians(fov_deg) / 2.0)
    if aspect > 1.0:
        height /= aspect  # the fov spans the wider side (sensor fit AUTO)
    return c2w @ Matrix.Translation((0.0, 0.0, -distance)) @ Matrix.Diagonal((height, height, height, 1.0))


def as_matrix(m: Any) -> Matrix:
    """A 4×4 ``Matrix`` from a nested list / array (row-major), identity for None."""
    if m is None:
        return Matrix.Identity(4)
    a = np.asarray(m, dtype=np.float64)
    if a.shape != (4, 4) or not np.isfinite(a).all():
        raise BadArrays(f"A transform must be a finite 4×4 matrix, got shape {tuple(a.shape)}.")
    return Matrix(a.tolist())


# ---------------------------------------------------------------- objects, collections

def ensure_collection(name: str, parent: bpy.types.Collection | None = None) -> bpy.types.Collection:
    """The child collection ``name`` of ``parent`` (the scene's by default), created when missing."""
    parent = parent or bpy.context.scene.collection
    coll = parent.children.get(name)
    if coll is None:
        coll = bpy.data.collections.new(name)
        parent.children.link(coll)
    return coll


def new_object(name: str, data: bpy.types.ID | None, collection: bpy.types.Collection,
               matrix: Matrix | None = None) -> bpy.types.Object:
    obj = bpy.data.objects.new(name, data)
    if matrix is not None:
        obj.matrix_world = matrix
    collection.objects.link(obj)
    return obj


def set_custom_properties(obj: bpy.types.ID, props: Mapping[str, Any], prefix: str = "latentforge_") -> None:
    """Store JSON-like metadata as ID properties (nested dicts become strings Blender can show)."""
    import json

    for key, value in props.items():
        if value is None:
            continue
        if isinstance(value, (bool, int, float, str)):
            obj[prefix + key] = value
        else:
            obj[prefix + key] = json.dumps(value, sort_keys=True, default=str)


def remove_data(data: bpy.types.ID | None) -> None:
    """Remove a mesh / point cloud / camera / image datablock if it still exists."""
    if data is None:
        return
    kind = type(data).__name__
    target = {"Mesh": bpy.data.meshes, "PointCloud": getattr(bpy.data, "pointclouds", None),
              "Camera": bpy.data.cameras, "Image": bpy.data.images, "Material": bpy.data.materials}.get(kind)
    if target is not None:
        try:
            target.remove(data)
        except ReferenceError:
            pass


def remove_objects(objects: Iterable[bpy.types.Object], with_data: bool = True) -> None:
    """Delete objects and, when nothing else uses them, their data and the materials/images we made."""
    for obj in list(objects):
        try:
            data = obj.data
            bpy.data.objects.remove(obj)
        except ReferenceError:
            continue
        if not with_data or data is None:
            continue
        try:
            if data.users:
                continue
            mats = [m for m in getattr(data, "materials", ()) if m is not None and m.get(OWNED_PROP)]
        except ReferenceError:
            continue
        remove_data(data)
        for mat in {m.name: m for m in mats}.values():
            try:
                if mat.users:
                    continue
                images = [n.image for n in mat.node_tree.nodes if getattr(n, "image", None)] if mat.node_tree else []
                remove_data(mat)
            except ReferenceError:
                continue
            for img in images:
                try:
                    if img.users == 0 and img.get(OWNED_PROP):
                        remove_data(img)
                except ReferenceError:
                    pass


def remove_empty_collection(coll: bpy.types.Collection | None) -> None:
    try:
        if coll is not None and not coll.objects and not coll.children:
            bpy.data.collections.remove(coll)
    except ReferenceError:
        pass


def world_bounds(obj: bpy.types.Object) -> tuple[np.ndarray, np.ndarray]:
    """World-space axis-aligned bounds (min, max) of an object's bounding box."""
    corners = np.array([obj.matrix_world @ Vector(c) for c in obj.bound_box])
    return corners.min(axis=0), corners.max(axis=0)
