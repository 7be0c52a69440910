"""Add-on preferences: how to reach the engine (start a local one, or connect to a running one)."""

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty

from . import engine_process
from .engine_bridge import BRIDGE, EngineSettings
from .ui_text import draw_status, wrapped_label

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class LatentforgePreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    mode: EnumProperty(
        name="Engine",
        items=[("LOCAL", "Start Local Engine", "Start the engine as a subprocess of Blender and manage it"),
               ("REMOTE", "Connect to Running Engine", "Connect to an engine started elsewhere (socket or host:port)")],
        default="LOCAL")
    python_path: StringProperty(
        name="Engine Python", subtype="FILE_PATH",
        description="Python interpreter of the environment where the Latentforge engine is installed "
                    "(empty: detect it)")
    data_dir: StringProperty(
        name="Data Folder", subtype="DIR_PATH",
        description="Where the engine keeps its job history, results and log (empty: this extension's user folder)")
    device: EnumProperty(
        name="Device",
        items=[("auto", "Auto", "CUDA when present, else CPU"), ("cpu", "CPU", ""), ("cuda", "CUDA", "")],
        default="auto")
    start_on_enable: BoolProperty(
        name="Start With Blender", default=False,
        description="Start the local engine when the add-on is enabled")
    auto_restart: BoolProperty(
        name="Restart After Crash", default=True,
        description="Restart the local engine when it exits unexpectedly (at most 3 times a minute)")
    socket_path: StringProperty(
        name="Socket", subtype="FILE_PATH",
        description="Unix socket of a running engine (the path its ready line printed); "
                    "leave empty to use host and port")
    host: StringProperty(name="Host", default="127.0.0.1")
    port: IntProperty(name="Port", default=0, min=0, max=65535)
    token: StringProperty(name="Token", subtype="PASSWORD", description="The engine's token (TCP only)")
    token_file: StringProperty(
        name="Token File", subtype="FILE_PATH",
        description="File holding the token (read again on every reconnect); used when Token is empty")

    def resolved_data_dir(self) -> str:
        if self.data_dir:
            return bpy.path.abspath(self.data_dir)
        return bpy.utils.extension_path_user(__package__, path="engine", create=True)

    def remote_address(self) -> str:
        if self.socket_path:
            return bpy.path.abspath(self.socket_path)
        host = self.host.strip()
        return f"tcp://[{host}]:{self.port}" if ":" in host else f"tcp://{host}:{self.port}"

    def check_remote(self) -> str:
        """Why connecting as configured is not allowed, or ""."""
        if self.socket_path:
            return ""
        if not self.port:
            return "Set the engine's port (or a socket path)."
        if self.host.strip() not in _LOOPBACK and not bpy.app.online_access:
            return ("Connecting to another machine needs online access: enable 'Allow Online Access' "
                    "in Preferences > System, or use a local engine.")
        return ""

    def engine_settings(self) -> EngineSettings:
        """A snapshot for the bridge's worker thread (it must not read bpy)."""
        return EngineSettings(
            mode=self.mode,
            python=bpy.path.abspath(self.python_path) if self.python_path else "",
            data_dir=self.resolved_data_dir(),
            device=self.device,
            address=self.remote_address(),
            token=self.token,
            token_file=bpy.path.abspath(self.token_file) if self.token_file else "",
            auto_restart=self.auto_restart,
        )

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        draw_status(layout, BRIDGE)
        layout.prop(self, "mode", expand=True)
        box = layout.box()
        if self.mode == "LOCAL":
            row = box.row(align=True)
            row.prop(self, "python_path")
            row.operator("latentforge.detect_python", text="", icon="VIEWZOOM")
            box.prop(self, "data_dir")
            box.prop(self, "device")
            row = box.row()
            row.prop(self, "start_on_enable")
            row.prop(self, "auto_restart")
            row = box.row(align=True)
            running = BRIDGE.process.running
            row.operator("latentforge.engine_start", text="Start", icon="PLAY").restart = False
            sub = row.row(align=True)
            sub.enabled = running
            sub.operator("latentforge.engine_stop", text="Stop", icon="SNAP_FACE")
            sub.operator("latentforge.engine_start", text="Restart", icon="FILE_REFRESH").restart = True
            row.operator("latentforge.show_log", text="Log", icon="TEXT")
            if BRIDGE.process.pid:
                box.label(text=f"Process {BRIDGE.process.pid} · {BRIDGE.process.poll()} · {BRIDGE.address}")
            tail = BRIDGE.process.tail(6)
            if tail:
                col = box.column(align=True)
                col.scale_y = 0.7
                for line in tail:
                    col.label(text=line[:120])
        else:
            box.prop(self, "socket_path")
            row = box.row(align=True)
            row.enabled = not self.socket_path
            row.prop(self, "host")
            row.prop(self, "port")
            sub = box.column()
            sub.enabled = not self.socket_path
            sub.prop(self, "token")
            sub.prop(self, "token_file")
            problem = self.check_remote()
            if problem:
                wrapped_label(box, problem, icon="INFO")
            row = box.row(align=True)
            row.operator("latentforge.engine_connect", text="Connect", icon="LINKED")
            row.operator("latentforge.engine_stop", text="Disconnect", icon="UNLINKED")


def preferences(context: bpy.types.Context | None = None) -> LatentforgePreferences:
    context = context or bpy.context
    return context.preferences.addons[__package__].preferences


def detect_python_into(prefs: LatentforgePreferences) -> tuple[str, str] | None:
    """Fill ``python_path`` with the first Python that imports the engine."""
    found = engine_process.detect_python()
    if found is not None:
        prefs.python_path = found[0]
    return found


CLASSES = (LatentforgePreferences,)
