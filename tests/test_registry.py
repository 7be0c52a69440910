"""The model registry: every known model listed, unavailable ones with a reason, extra status fields kept."""

from __future__ import annotations

import json

from engine.data.procedural import CATEGORIES
from engine.pipelines.registry import list_models


def test_list_models_reports_reasons_and_passes_categories_through():
    models = {m["name"]: m for m in list_models()}
    assert {"procedural", "points", "mesh", "views"} <= set(models)
    json.dumps(models)  # travels in a protocol header
    assert models["procedural"]["available"]
    assert models["procedural"]["categories"] == list(CATEGORIES)
    for name in ("mesh", "views"):
        assert not models[name]["available"] and models[name]["reason"]
    assert not models["procedural"]["tasks"]["refine"]["available"]
    assert models["procedural"]["tasks"]["refine"]["reason"]
