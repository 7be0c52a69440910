"""One module per procedural category.

Each module defines ``SPACE`` (parameter space, see :mod:`engine.data.shapes.space`),
``build(params) -> manifold3d.Manifold`` (the solid in the category's working units,
+Z up, front towards -Y) and ``captions(params) -> list[str]``.
"""
