"""Geometry layer (see DESIGN.md): one module per job, imported directly.

- ``tetgrid``: ``make_tet_grid``, ``apply_deformation``, ``cap_boundary``, ``boundary_mask``,
  ``tet_volumes`` (deformable Kuhn tet grid over [-bound, bound]^3, default [-1, 1]^3)
- ``marching_tets``: ``marching_tetrahedra`` (batched, differentiable, watertight),
  ``extract_meshes`` (grid SDF [+ deformation] → closed meshes)
- ``sdf``: ``mesh_sdf``, ``mesh_occupancy``, ``winding_number`` (libigl)
- ``sampling``: ``sample_surface``
- ``points_to_mesh``: ``points_to_mesh`` (point cloud → watertight mesh: closing on the tet grid + marching tets)
- ``normalize``: ``normalize_box``, ``normalize_global``, ``global_stats``, ``denormalize``
- ``validate`` / ``errors``: input checks (and ``mesh_topology``: watertight / manifold checks) and their typed errors

Nothing is imported here so that e.g. ``engine.geometry.normalize`` stays cheap to import.
"""
