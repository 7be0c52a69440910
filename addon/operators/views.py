"""Novel Views: images of the selected object (or of an image) from new camera poses."""

import math

import bpy

from .. import scene_builders as sb
from ..engine_bridge import BRIDGE
from ..jobs import Job
from .common import check_ready, load_image_array, poll_connected, report_bad_input


def view_poses(settings) -> list[list[float]]:
    """[[polar, azimuth, radius], ...] in radians / scene units (polar measured from +Z)."""
    if settings.preset == "CUSTOM":
        return [[float(p.polar), float(p.azimuth), float(p.radius)] for p in settings.poses]
    n = 8 if settings.preset == "ORBIT_8" else 4
    polar = math.pi / 2 - float(settings.elevation)
    return [[polar, 2 * math.pi * i / n, float(settings.radius)] for i in range(n)]


class LATENTFORGE_OT_views(bpy.types.Operator):
    """Make novel views; each appears as an image on a camera-facing plane plus a matching camera"""

    bl_idname = "latentforge.views"
    bl_label = "Novel Views"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return poll_connected(cls, "views")

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.latentforge.views
        model = check_ready(self, "views", settings.model)
        if model is None:
            return {"CANCELLED"}
        poses = view_poses(settings)
        if not poses:
            self.report({"ERROR"}, "No camera poses: add poses, or pick an orbit preset.")
            return {"CANCELLED"}
        ctx: dict = {"cursor": tuple(context.scene.cursor.location)}
        try:
            if settings.source == "OBJECT":
                obj = context.active_object
                if obj is None:
                    self.report({"ERROR"}, "No active object: select the object to see from new views.")
                    return {"CANCELLED"}
                vertices, faces = sb.mesh_arrays(obj)
                arrays = {"vertices": vertices, "faces": faces}
                ctx["source"] = obj.name
                label = obj.name
            else:
                arrays = {"image": load_image_array(settings.image_path)}
                label = bpy.path.display_name_from_filepath(settings.image_path)
        except sb.BadArrays as exc:
            return report_bad_input(self, exc)
        params = {"poses": poses, "steps": int(settings.steps), "guidance": float(settings.guidance)}
        spec = {"task": "views", "model": model, "params": params, "priority": 0}
        BRIDGE.submit(Job("views", spec, f"{model}: views of {label}", context=ctx), arrays)
        self.report({"INFO"}, f"Making {len(poses)} views of {label} with {model}")
        return {"FINISHED"}


class LATENTFORGE_OT_view_pose_add(bpy.types.Operator):
    """Add a camera pose (polar, azimuth, distance)"""

    bl_idname = "latentforge.view_pose_add"
    bl_label = "Add Pose"
    bl_options = {"REGISTER", "UNDO", "INTERNAL"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        poses = context.scene.latentforge.views.poses
        pose = poses.add()
        pose.azimuth = (len(poses) - 1) * math.pi / 4
        return {"FINISHED"}


class LATENTFORGE_OT_view_pose_remove(bpy.types.Operator):
    """Remove a camera pose"""

    bl_idname = "latentforge.view_pose_remove"
    bl_label = "Remove Pose"
    bl_options = {"REGISTER", "UNDO", "INTERNAL"}

    index: bpy.props.IntProperty()

    def execute(self, context: bpy.types.Context) -> set[str]:
        poses = context.scene.latentforge.views.poses
        if 0 <= self.index < len(poses):
            poses.remove(self.index)
        return {"FINISHED"}


CLASSES = (LATENTFORGE_OT_views, LATENTFORGE_OT_view_pose_add, LATENTFORGE_OT_view_pose_remove)
