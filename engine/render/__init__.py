"""Render layer (see DESIGN.md): cameras and mesh renderers.

- ``cameras``: spherical cameras, ``look_at``, Blender / OpenCV conversions, orbits
- ``renderer``: ``render_mesh`` (backends ``cpu`` = Embree, ``cuda`` = nvdiffrast)
- ``shading``: rays and the shading shared by both backends
"""
