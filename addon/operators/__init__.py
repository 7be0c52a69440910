"""Operators, one module per panel section; ``CLASSES`` in registration order."""

from . import engine, generate, interpolate, jobs, populate, refine, views

CLASSES = (*engine.CLASSES, *generate.CLASSES, *refine.CLASSES, *interpolate.CLASSES, *views.CLASSES,
           *populate.CLASSES, *jobs.CLASSES)
