"""Operators that start, stop, connect and inspect the engine."""

from pathlib import Path

import bpy
from bpy.props import BoolProperty

from ..engine_bridge import BRIDGE
from ..preferences import detect_python_into, preferences

LOG_TEXT = "Latentforge Engine Log"


class LATENTFORGE_OT_engine_start(bpy.types.Operator):
    """Start the local engine (or restart it) with the settings in the add-on preferences"""

    bl_idname = "latentforge.engine_start"
    bl_label = "Start Engine"
    bl_options = {"REGISTER", "INTERNAL"}

    restart: BoolProperty(name="Restart", default=False, options={"SKIP_SAVE"})

    def execute(self, context: bpy.types.Context) -> set[str]:
        prefs = preferences(context)
        if prefs.mode != "LOCAL":
            return _connect(self, prefs)
        if BRIDGE.busy and BRIDGE.state in ("starting", "connecting"):
            self.report({"WARNING"}, "The engine is already starting.")
            return {"CANCELLED"}
        BRIDGE.start_local(prefs.engine_settings())
        self.report({"INFO"}, "Restarting the engine…" if self.restart else "Starting the engine…")
        return {"FINISHED"}


class LATENTFORGE_OT_engine_stop(bpy.types.Operator):
    """Stop the local engine, or disconnect from a remote one"""

    bl_idname = "latentforge.engine_stop"
    bl_label = "Stop Engine"
    bl_options = {"REGISTER", "INTERNAL"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        BRIDGE.stop()
        self.report({"INFO"}, "Engine stopped." if BRIDGE.owns_process else "Disconnected.")
        return {"FINISHED"}


class LATENTFORGE_OT_engine_connect(bpy.types.Operator):
    """Connect to a running engine (socket path, or host:port with its token)"""

    bl_idname = "latentforge.engine_connect"
    bl_label = "Connect to Engine"
    bl_options = {"REGISTER", "INTERNAL"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        return _connect(self, preferences(context))


def _connect(op: bpy.types.Operator, prefs) -> set[str]:
    problem = prefs.check_remote()
    if problem:
        op.report({"ERROR"}, problem)
        return {"CANCELLED"}
    BRIDGE.connect(prefs.engine_settings())
    op.report({"INFO"}, f"Connecting to {prefs.remote_address()}…")
    return {"FINISHED"}


class LATENTFORGE_OT_detect_python(bpy.types.Operator):
    """Find a Python interpreter that has the Latentforge engine installed"""

    bl_idname = "latentforge.detect_python"
    bl_label = "Detect Engine Python"
    bl_options = {"REGISTER", "INTERNAL"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        found = detect_python_into(preferences(context))
        if found is None:
            self.report({"ERROR"}, "No Python with the engine installed was found. Set 'Engine Python' to "
                                   "the python of the environment where the engine is installed.")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Found engine {found[1]} at {found[0]}")
        return {"FINISHED"}


class LATENTFORGE_OT_show_log(bpy.types.Operator):
    """Load the engine's log into a text block (open it in a Text Editor)"""

    bl_idname = "latentforge.show_log"
    bl_label = "Show Engine Log"
    bl_options = {"REGISTER", "INTERNAL"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        path = BRIDGE.process.log_path
        if path is None or not Path(path).is_file():
            self.report({"WARNING"}, "No engine log yet: start the engine first.")
            return {"CANCELLED"}
        text = bpy.data.texts.get(LOG_TEXT) or bpy.data.texts.new(LOG_TEXT)
        # Only the end: a long-running engine's log can be large.
        data = Path(path).read_bytes()[-200_000:].decode("utf-8", errors="replace")
        text.from_string(data)
        shown = False
        for area in context.screen.areas if context.screen else ():
            if area.type == "TEXT_EDITOR":
                area.spaces.active.text = text
                shown = True
                break
        self.report({"INFO"}, f"Engine log in text '{text.name}'" + ("" if shown else " (open a Text Editor)"))
        return {"FINISHED"}


class LATENTFORGE_OT_refresh_models(bpy.types.Operator):
    """Ask the engine again which models are installed"""

    bl_idname = "latentforge.refresh_models"
    bl_label = "Refresh Models"
    bl_options = {"REGISTER", "INTERNAL"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return BRIDGE.connected

    def execute(self, context: bpy.types.Context) -> set[str]:
        BRIDGE.refresh_models()
        return {"FINISHED"}


CLASSES = (LATENTFORGE_OT_engine_start, LATENTFORGE_OT_engine_stop, LATENTFORGE_OT_engine_connect,
           LATENTFORGE_OT_detect_python, LATENTFORGE_OT_show_log, LATENTFORGE_OT_refresh_models)
