"""Jobs: cancel, clear finished, refresh history, re-import stored results."""

import bpy
from bpy.props import StringProperty

from ..engine_bridge import BRIDGE


class LATENTFORGE_OT_cancel_job(bpy.types.Operator):
    """Cancel this job (its preview is removed)"""

    bl_idname = "latentforge.cancel_job"
    bl_label = "Cancel Job"
    bl_options = {"REGISTER", "INTERNAL"}

    key: StringProperty(options={"SKIP_SAVE"})

    def execute(self, context: bpy.types.Context) -> set[str]:
        jobs = [BRIDGE.jobs.get(self.key)] if self.key else BRIDGE.jobs.active()
        jobs = [j for j in jobs if j is not None and j.active]
        if not jobs:
            self.report({"WARNING"}, "No running job to cancel.")
            return {"CANCELLED"}
        for job in jobs:
            BRIDGE.cancel(job)
        self.report({"INFO"}, f"Cancelling {len(jobs)} job(s)")
        return {"FINISHED"}


class LATENTFORGE_OT_clear_jobs(bpy.types.Operator):
    """Remove finished, failed and cancelled jobs from the list"""

    bl_idname = "latentforge.clear_jobs"
    bl_label = "Clear Finished Jobs"
    bl_options = {"REGISTER", "INTERNAL"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        BRIDGE.jobs.clear_finished()
        return {"FINISHED"}


class LATENTFORGE_OT_refresh_history(bpy.types.Operator):
    """Fetch the engine's job history"""

    bl_idname = "latentforge.refresh_history"
    bl_label = "Refresh History"
    bl_options = {"REGISTER", "INTERNAL"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return BRIDGE.connected

    def execute(self, context: bpy.types.Context) -> set[str]:
        BRIDGE.refresh_history()
        return {"FINISHED"}


class LATENTFORGE_OT_reimport(bpy.types.Operator):
    """Build this finished job's stored results again, at the 3D cursor"""

    bl_idname = "latentforge.reimport"
    bl_label = "Re-import"
    bl_options = {"REGISTER", "INTERNAL"}

    job_id: StringProperty(options={"SKIP_SAVE"})

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return BRIDGE.connected

    def execute(self, context: bpy.types.Context) -> set[str]:
        entry = next((h for h in BRIDGE.history if h.get("job_id") == self.job_id), None)
        if entry is None:
            self.report({"ERROR"}, f"Job {self.job_id} is not in the history; refresh it.")
            return {"CANCELLED"}
        if entry.get("state") != "finished":
            self.report({"ERROR"}, f"Job {self.job_id} is {entry.get('state')}; only finished jobs have results.")
            return {"CANCELLED"}
        BRIDGE.reimport(self.job_id, dict(entry.get("spec") or {}))
        self.report({"INFO"}, f"Re-importing job {self.job_id}")
        return {"FINISHED"}


CLASSES = (LATENTFORGE_OT_cancel_job, LATENTFORGE_OT_clear_jobs, LATENTFORGE_OT_refresh_history,
           LATENTFORGE_OT_reimport)
