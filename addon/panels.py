"""3D Viewport > Sidebar > Latentforge: status, Generate, Refine, Interpolate, Novel Views, Populate, Jobs."""

from __future__ import annotations

import time

import bpy

from .engine_bridge import BRIDGE
from .properties import model_categories, offers_mesh_output
from .ui_text import draw_status, wrapped_label


class _LatentforgePanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Latentforge"


def _unavailable(layout: bpy.types.UILayout, task: str) -> bool:
    """Draw why ``task`` cannot run (the engine's reason); True when it cannot."""
    if not BRIDGE.connected:
        layout.label(text="Connect to an engine first", icon="UNLINKED")
        return True
    reason = BRIDGE.task_unavailable_reason(task)
    if reason:
        box = layout.box()
        box.label(text="Unavailable", icon="ERROR")
        wrapped_label(box, reason)
        return True
    return False


class LATENTFORGE_PT_main(_LatentforgePanel, bpy.types.Panel):
    bl_idname = "LATENTFORGE_PT_main"
    bl_label = "Latentforge"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        draw_status(layout, BRIDGE)
        row = layout.row(align=True)
        if BRIDGE.state in ("disconnected", "error"):
            row.operator("latentforge.engine_start", text="Start / Connect", icon="PLAY")
        else:
            row.operator("latentforge.engine_start", text="Restart", icon="FILE_REFRESH").restart = True
            row.operator("latentforge.engine_stop", text="Stop", icon="SNAP_FACE")
        row.operator("latentforge.refresh_models", text="", icon="FILE_REFRESH")
        row.operator("preferences.addon_show", text="", icon="PREFERENCES").module = __package__


class LATENTFORGE_PT_generate(_LatentforgePanel, bpy.types.Panel):
    bl_idname = "LATENTFORGE_PT_generate"
    bl_label = "Generate"
    bl_parent_id = "LATENTFORGE_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        s = context.scene.latentforge.generate
        col = layout.column()
        col.enabled = not _unavailable(layout, "generate")
        col.prop(s, "model")
        col.prop(s, "input_mode", expand=True)
        if s.input_mode == "TEXT":
            col.prop(s, "prompt")
        elif s.input_mode == "CATEGORY":
            col.prop(s, "category" if model_categories(s.model) else "category_text")
        else:
            col.prop(s, "image_path")
        col.prop(s, "count")
        if s.count > 1:
            col.prop(s, "spacing")
        row = col.row(align=True)
        sub = row.row(align=True)
        sub.enabled = not s.randomize_seed
        sub.prop(s, "seed")
        row.prop(s, "randomize_seed", text="", icon="FILE_REFRESH")
        col.prop(s, "steps")
        row = col.row(align=True)
        row.prop(s, "custom_guidance", text="")
        sub = row.row(align=True)
        sub.enabled = s.custom_guidance
        sub.prop(s, "guidance")
        _output_props(col, s)
        col.operator("latentforge.generate", icon="PLAY")


class LATENTFORGE_PT_refine(_LatentforgePanel, bpy.types.Panel):
    bl_idname = "LATENTFORGE_PT_refine"
    bl_label = "Refine Selected"
    bl_parent_id = "LATENTFORGE_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        s = context.scene.latentforge.refine
        col = layout.column()
        col.enabled = not _unavailable(layout, "refine")
        col.prop(s, "model")
        col.prop(s, "strength")
        col.prop(s, "prompt")
        col.prop(s, "steps")
        col.prop(s, "mode")
        _output_props(col, s)
        n = len(context.selected_objects)
        col.operator("latentforge.refine", text=f"Refine {n} Selected" if n else "Refine Selected", icon="MOD_SMOOTH")


class LATENTFORGE_PT_interpolate(_LatentforgePanel, bpy.types.Panel):
    bl_idname = "LATENTFORGE_PT_interpolate"
    bl_label = "Interpolate"
    bl_parent_id = "LATENTFORGE_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        s = context.scene.latentforge.interpolate
        col = layout.column()
        col.enabled = not _unavailable(layout, "interpolate")
        col.prop(s, "model")
        col.prop(s, "count")
        if model_categories(s.model):
            col.prop(s, "category")
        col.prop(s, "steps")
        row = col.row(align=True)
        sub = row.row(align=True)
        sub.enabled = not s.randomize_seed
        sub.prop(s, "seed")
        row.prop(s, "randomize_seed", text="", icon="FILE_REFRESH")
        _output_props(col, s)
        selected = context.selected_objects
        if len(selected) == 2:
            active = getattr(context, "active_object", None)
            a = next((o for o in selected if o != active), selected[0]) if active in selected else selected[0]
            b = active if active in selected else selected[1]
            col.label(text=f"{a.name} → {b.name}", icon="ARROW_LEFTRIGHT")
        else:
            col.label(text="Select two mesh objects (active = end)", icon="INFO")
        col.operator("latentforge.interpolate", icon="IPO_EASE_IN_OUT")


class LATENTFORGE_PT_views(_LatentforgePanel, bpy.types.Panel):
    bl_idname = "LATENTFORGE_PT_views"
    bl_label = "Novel Views"
    bl_parent_id = "LATENTFORGE_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        s = context.scene.latentforge.views
        col = layout.column()
        col.enabled = not _unavailable(layout, "views")
        col.prop(s, "model")
        col.prop(s, "source")
        if s.source == "IMAGE":
            col.prop(s, "image_path")
        col.prop(s, "preset")
        if s.preset == "CUSTOM":
            for i, pose in enumerate(s.poses):
                row = col.row(align=True)
                row.prop(pose, "polar", text="")
                row.prop(pose, "azimuth", text="")
                row.prop(pose, "radius", text="")
                row.operator("latentforge.view_pose_remove", text="", icon="X").index = i
            col.operator("latentforge.view_pose_add", icon="ADD")
        else:
            col.prop(s, "elevation")
            col.prop(s, "radius")
        col.prop(s, "steps")
        col.prop(s, "guidance")
        col.operator("latentforge.views", icon="CAMERA_DATA")


class LATENTFORGE_PT_populate(_LatentforgePanel, bpy.types.Panel):
    bl_idname = "LATENTFORGE_PT_populate"
    bl_label = "Populate Scene"
    bl_parent_id = "LATENTFORGE_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        s = context.scene.latentforge.populate
        col = layout.column()
        col.enabled = not _unavailable(layout, "generate")
        col.prop(s, "model")
        for i, r in enumerate(s.rows):
            box = col.box()
            row = box.row(align=True)
            row.prop(r, "input_mode", text="")
            row.prop(r, "prompt" if r.input_mode == "TEXT" else "category", text="")
            row.operator("latentforge.populate_row_remove", text="", icon="X").index = i
            row = box.row(align=True)
            row.prop(r, "count")
            row.prop(r, "variants")
        col.operator("latentforge.populate_row_add", icon="ADD")
        col.separator()
        col.use_property_split = True
        col.use_property_decorate = False
        col.prop(s, "target")
        if s.target == "CURSOR":
            col.prop(s, "radius")
        col.prop(s, "spacing")
        col.prop(s, "rotate")
        row = col.row(align=True)
        row.prop(s, "scale_min", text="Scale")
        row.prop(s, "scale_max", text="")
        row = col.row(align=True)
        sub = row.row(align=True)
        sub.enabled = not s.randomize_seed
        sub.prop(s, "seed")
        row.prop(s, "randomize_seed", text="", icon="FILE_REFRESH")
        col.operator("latentforge.populate", icon="OUTLINER_COLLECTION")


class LATENTFORGE_PT_jobs(_LatentforgePanel, bpy.types.Panel):
    bl_idname = "LATENTFORGE_PT_jobs"
    bl_label = "Jobs"
    bl_parent_id = "LATENTFORGE_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        jobs = BRIDGE.jobs.all()
        if not jobs:
            layout.label(text="No jobs yet")
        for job in jobs[:12]:
            box = layout.box()
            row = box.row(align=True)
            row.label(text=job.label, icon=_STATE_ICONS.get(job.state, "DOT"))
            if job.active:
                row.operator("latentforge.cancel_job", text="", icon="X").key = job.key
            if job.active and job.state == "running":
                box.progress(factor=job.progress, type="BAR", text=job.status_text())
            else:
                box.label(text=job.status_text())
                if job.state == "failed" and job.error and job.error.get("advice"):
                    wrapped_label(box, str(job.error["advice"]))
        row = layout.row(align=True)
        row.operator("latentforge.cancel_job", text="Cancel All", icon="CANCEL").key = ""
        row.operator("latentforge.clear_jobs", text="Clear", icon="TRASH")


class LATENTFORGE_PT_history(_LatentforgePanel, bpy.types.Panel):
    bl_idname = "LATENTFORGE_PT_history"
    bl_label = "History"
    bl_parent_id = "LATENTFORGE_PT_jobs"
    bl_options = {"DEFAULT_CLOSED"}

    def draw_header(self, context: bpy.types.Context) -> None:
        self.layout.operator("latentforge.refresh_history", text="", icon="FILE_REFRESH", emboss=False)

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        if not BRIDGE.history:
            layout.label(text="No history (refresh)")
        for entry in BRIDGE.history[:20]:
            spec = entry.get("spec") or {}
            params = spec.get("params") or {}
            what = params.get("prompt") or params.get("category") or spec.get("task", "")
            when = time.strftime("%H:%M", time.localtime(entry.get("created") or 0))
            row = layout.row(align=True)
            row.label(text=f"{when} {spec.get('model', '?')}: {what}", icon=_STATE_ICONS.get(entry.get("state"), "DOT"))
            sub = row.row(align=True)
            sub.enabled = entry.get("state") == "finished"
            sub.operator("latentforge.reimport", text="", icon="IMPORT").job_id = str(entry.get("job_id"))


def _output_props(col: bpy.types.UILayout, s) -> None:
    """Output: Points / Mesh, for models that make point clouds the engine can mesh."""
    if offers_mesh_output(s.model):
        col.prop(s, "output", expand=True)
        if s.output == "MESH":
            col.prop(s, "mesh_resolution")


_STATE_ICONS = {"submitting": "SORTTIME", "queued": "SORTTIME", "running": "PLAY", "finished": "CHECKMARK",
                "failed": "ERROR", "cancelled": "CANCEL", "lost": "UNLINKED"}

CLASSES = (LATENTFORGE_PT_main, LATENTFORGE_PT_generate, LATENTFORGE_PT_refine, LATENTFORGE_PT_interpolate,
           LATENTFORGE_PT_views, LATENTFORGE_PT_populate, LATENTFORGE_PT_jobs, LATENTFORGE_PT_history)
