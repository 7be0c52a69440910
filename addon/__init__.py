"""Latentforge for Blender: generate meshes, point clouds and novel views with a local engine.

The engine (PyTorch) runs in its own process; this add-on talks to it over a local
socket (``_link``: the engine's protocol/client/errors modules, copied in at build
time) and builds the results in the scene. It imports only the standard library,
numpy and bpy.
"""

from __future__ import annotations

import bpy

from . import engine_bridge, panels, preferences, properties
from .operators import CLASSES as OPERATOR_CLASSES

# The one registration list, in dependency order (property groups before their users).
CLASSES = (*properties.CLASSES, *preferences.CLASSES, *OPERATOR_CLASSES, *panels.CLASSES)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    properties.register()
    engine_bridge.register()
    prefs = bpy.context.preferences.addons[__package__].preferences
    if prefs.start_on_enable and prefs.mode == "LOCAL":
        engine_bridge.BRIDGE.start_local(prefs.engine_settings())


def unregister() -> None:
    engine_bridge.unregister()
    properties.unregister()
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
