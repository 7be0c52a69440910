"""Small drawing helpers shared by the panels and the preferences: status line, wrapped text."""

from __future__ import annotations

import textwrap

import bpy


def wrapped_label(layout: bpy.types.UILayout, text: str, icon: str = "NONE", width: int = 48) -> None:
    """A label broken into lines (Blender labels do not wrap by themselves)."""
    col = layout.column(align=True)
    col.scale_y = 0.8
    for i, line in enumerate(textwrap.wrap(text, width) or [""]):
        col.label(text=line, icon=icon if i == 0 else "BLANK1" if icon != "NONE" else "NONE")


def draw_status(layout: bpy.types.UILayout, bridge) -> None:
    """The status line: connection, device, queue; the current problem with its advice."""
    icon, text = bridge.status_line()
    box = layout.box()
    box.label(text=text, icon=icon)
    problem = bridge.problem
    if problem and bridge.state in ("error", "lost", "connected"):
        if bridge.state != "connected" or problem.get("code") == "version.differs":
            if problem.get("advice"):
                wrapped_label(box, str(problem["advice"]), icon="INFO")
    last = bridge.last_error
    if last and bridge.state == "connected" and last.get("advice"):
        # The newest error stays visible until the next one (reports also go to the info log).
        wrapped_label(box, f"Last error: {last['message']}", icon="ERROR")
        wrapped_label(box, str(last["advice"]), icon="BLANK1")
