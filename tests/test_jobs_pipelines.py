"""Model registry and the procedural pipeline (validation, prompts, populate layout, run through a context)."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from engine.errors import InvalidRequest, JobCancelled, ModelUnavailable
from engine.pipelines import registry
from engine.pipelines.base import TASKS
from engine.pipelines.procedural import (AmbiguousPrompt, ProceduralPipeline, PromptWithoutCategory,
                                         category_from_prompt)


class Ctx:
    device = "cpu"

    def __init__(self, cancel_after: int | None = None) -> None:
        self.progress_calls: list[tuple] = []
        self.previews: list[tuple] = []
        self.checks = 0
        self.cancel_after = cancel_after

    def progress(self, stage, step, total):
        self.progress_calls.append((stage, step, total))

    def wants_preview(self, step):
        return True

    def preview(self, kind, arrays, meta=None):
        self.previews.append((kind, arrays, meta))

    def check_cancelled(self):
        self.checks += 1
        if self.cancel_after is not None and self.checks > self.cancel_after:
            raise JobCancelled("cancelled")


def test_list_models_reports_every_model_with_reasons():
    models = {m["name"]: m for m in registry.list_models()}
    assert list(models)[:4] == ["procedural", "points", "mesh", "views"]
    for m in models.values():
        # plus exactly the extra fields the pipeline's status() reports (e.g. categories)
        extra = set(registry.get_pipeline(m["name"]).status()) - {"available", "reason", "tasks"}
        assert set(m) == {"name", "available", "reason", "kinds", "tasks"} | extra
        assert set(m["tasks"]) >= set(TASKS)
        if not m["available"]:
            assert m["reason"]
    assert models["procedural"]["available"] and models["procedural"]["kinds"] == ["mesh"]
    assert not models["mesh"]["available"] and not models["views"]["available"]
    assert models["views"]["kinds"] == ["images"]
    try:
        importlib.import_module("engine.pipelines.points")
    except ModuleNotFoundError:
        assert not models["points"]["available"] and "not installed" in models["points"]["reason"]


def test_unknown_and_unavailable_models():
    with pytest.raises(ModelUnavailable) as err:
        registry.get_pipeline("dreamfusion")
    assert "procedural" in err.value.message
    with pytest.raises(ModelUnavailable):
        registry.check_task(registry.get_pipeline("mesh"), "generate")
    with pytest.raises(ModelUnavailable) as err:
        registry.check_task(registry.get_pipeline("procedural"), "refine")
    assert "points" in err.value.message
    registry.check_task(registry.get_pipeline("procedural"), "populate")


def test_extra_pipelines_from_the_environment(monkeypatch):
    monkeypatch.setenv(registry.EXTRA_ENV, "server_slow_pipeline:SlowPipeline")
    assert registry.get_pipeline("slow").name == "slow"
    assert "slow" in [m["name"] for m in registry.list_models()]
    monkeypatch.delenv(registry.EXTRA_ENV)
    with pytest.raises(ModelUnavailable):
        registry.get_pipeline("slow")


def test_prompt_to_category():
    assert category_from_prompt("Two wooden CHAIRS, please") == ["chair"]
    assert category_from_prompt("a lamp next to a table") == ["lamp", "table"]
    assert category_from_prompt("a spaceship") == []
    assert category_from_prompt("armchair") == []  # whole words only
    p = ProceduralPipeline()
    with pytest.raises(PromptWithoutCategory) as err:
        p.validate("generate", {"prompt": "a spaceship"})
    assert err.value.code == "procedural.no_category" and "chair" in err.value.message
    with pytest.raises(AmbiguousPrompt):
        p.validate("generate", {"prompt": "a lamp next to a table"})


def test_validate_normalizes_and_refuses_clearly():
    p = ProceduralPipeline()
    out = p.validate("generate", {"category": "chair"})
    assert out["count"] == 1 and isinstance(out["seed"], int) and out["overrides"] == {}
    assert p.validate("generate", out) == out  # re-validation after a restart keeps the job the same
    for bad in ({"category": "chair", "count": 0}, {"category": "chair", "count": 65},
                {"category": "chair", "seed": -1}, {"category": "chair", "seed": 1.5},
                {"category": "chair", "colour": "red"}, {}, {"category": 3}):
        with pytest.raises(InvalidRequest):
            p.validate("generate", bad)
    with pytest.raises(InvalidRequest) as err:
        p.validate("generate", {"category": "chair", "overrides": {"no_such_param": 1}})
    assert err.value.code == "data.invalid_params"
    with pytest.raises(InvalidRequest) as err:
        p.validate("generate", {"category": "spaceship"})
    assert err.value.code == "data.unknown_category"
    with pytest.raises(ModelUnavailable):
        p.validate("generate", {"category": "chair", "arrays": {"image": np.zeros((2, 2, 4), np.uint8)}})
    with pytest.raises(ModelUnavailable):
        p.validate("refine", {})
    status = p.status()
    assert status["available"] and not status["tasks"]["refine"]["available"] and status["tasks"]["refine"]["reason"]


def test_generate_runs_with_progress_previews_and_typed_results():
    p = ProceduralPipeline()
    params = p.validate("generate", {"category": "chair", "count": 3, "seed": 10})
    ctx = Ctx()
    results = p.run("generate", params, ctx)
    assert len(results) == 3
    for i, r in enumerate(results):
        assert r.kind == "mesh" and r.meta["seed"] == 10 + i and r.meta["category"] == "chair"
        v, f, n = r.arrays["vertices"], r.arrays["faces"], r.arrays["normals"]
        assert v.dtype == np.float32 and f.dtype == np.int32 and n.dtype == np.float32
        assert v.shape[1] == 3 and f.shape[1] == 3 and n.shape == v.shape and f.max() < len(v)
        assert np.abs(v).max() <= 1.0 + 1e-5
    assert [c[1] for c in ctx.progress_calls if c[0] == "generate"][-3:] == [1, 2, 3]
    assert len(ctx.previews) == 3 and ctx.previews[0][0] == "points"
    assert ctx.previews[0][1]["points"].shape == (2048, 3)
    again = p.run("generate", params, Ctx())
    assert again[1].arrays["vertices"].tobytes() == results[1].arrays["vertices"].tobytes()  # deterministic


def test_generate_stops_when_cancelled():
    p = ProceduralPipeline()
    params = p.validate("generate", {"category": "chair", "count": 5, "seed": 1})
    with pytest.raises(JobCancelled):
        p.run("generate", params, Ctx(cancel_after=2))


def test_populate_lays_objects_on_a_grid():
    p = ProceduralPipeline()
    params = p.validate("populate", {"items": [{"category": "chair", "count": 5}], "seed": 2, "spacing": 3})
    results = p.run("populate", params, Ctx())
    assert len(results) == 5
    offsets = [tuple(np.asarray(r.meta["transform"])[:2, 3]) for r in results]
    assert len(set(offsets)) == 5
    xs = sorted({o[0] for o in offsets})
    assert np.allclose(np.diff(xs), 3.0)
    with pytest.raises(InvalidRequest):
        p.validate("populate", {"items": [{"category": "chair", "count": 200}, {"category": "chair", "count": 57}]})
    with pytest.raises(InvalidRequest):
        p.validate("populate", {"items": []})
