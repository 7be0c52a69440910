"""Pipelines: one per (model, task). See ``engine.pipelines.base`` for the interface."""
