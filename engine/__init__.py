"""Latentforge engine: 3D generative models served over a local socket.

Layers (DESIGN.md): server -> jobs -> pipelines -> models -> geometry/render -> data/eval.
Each layer imports only the ones below it.
"""

__version__ = "0.1.0"
