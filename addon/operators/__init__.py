"""Operators, one module per panel section; ``CLASSES`` in registration order."""

from . import engine, generate, jobs, populate, refine, views

CLASSES = (*engine.CLASSES, *generate.CLASSES, *refine.CLASSES, *views.CLASSES, *populate.CLASSES,
           *jobs.CLASSES)
