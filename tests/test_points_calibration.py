"""Extent calibration of the point model: the quantile map, fitting it on a tiny model, its
file in the checkpoint folder, and where it applies (fresh category samples only)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from engine.models.points.calibration import calibrate_points, extent_scales, fit_extent_calibration, quantile_table
from engine.models.points.checkpoint import CALIBRATION, checkpoint_complete
from engine.models.points.config import CalibrationConfig, tiny_config
from engine.models.points.data import PointSets
from engine.models.points.model import PointsModel, latent_extents
from engine.models.points.sampler import LatentSampler

torch.set_num_threads(1)


def _box(extents: np.ndarray, n: int = 64, seed: int = 0) -> np.ndarray:
    """Points n×3 spread in a box of the given extents, centred at (0.1, -0.2, 0.3)."""
    rng = np.random.default_rng(seed)
    p = (rng.random((n, 3)) - 0.5) * extents
    p -= (p.max(0) + p.min(0)) / 2   # the box exactly centred, its extents exactly these
    p *= extents / (p.max(0) - p.min(0))
    return (p + np.array([0.1, -0.2, 0.3])).astype(np.float32)


def test_quantile_map_moves_the_model_distribution_onto_the_data():
    model_e = np.repeat(np.linspace(1.0, 2.0, 400)[:, None], 3, 1)   # the model's extents: too small
    data_e = 1.3 * model_e[::-1]                                        # the data's: 1.3 times as large
    q_m = quantile_table(model_e, np.zeros(400, int), 1, 33)
    q_d = quantile_table(data_e, np.zeros(400, int), 1, 33)
    assert q_m.shape == (1, 3, 33) and bool((q_m.diff(dim=-1) >= 0).all())
    e = torch.tensor([[1.5, 1.2, 1.9]])
    s = extent_scales(e, torch.zeros(1, dtype=torch.long), q_m, q_d, max_scale=2.0)
    assert torch.allclose(s, torch.full((1, 3), 1.3), atol=1e-3)
    # outside the fitted range the end ratio holds, and max_scale bounds every factor
    far = extent_scales(torch.tensor([[0.5, 3.0, 1.5]]), torch.zeros(1, dtype=torch.long), q_m, q_d, 2.0)
    assert torch.allclose(far[0, :2], torch.tensor([1.3, 1.3]), atol=1e-3)
    tight = extent_scales(e, torch.zeros(1, dtype=torch.long), q_m, q_d, max_scale=1.1)
    assert torch.allclose(tight, torch.full((1, 3), 1.1))


def test_quantile_table_needs_shapes_of_every_category():
    with pytest.raises(ValueError, match="category index 1 has no shapes"):
        quantile_table(np.ones((4, 3)), np.zeros(4, int), 2, 5)


def test_calibrate_points_keeps_centre_order_and_unconditional_shapes():
    levels = torch.linspace(1.0, 2.0, 9)
    q_m = levels.expand(2, 3, 9).clone()
    q_d = q_m.clone()
    q_d[1] = q_d[1] * torch.tensor([1.0, 1.25, 0.8])[:, None]     # category 1: taller, shallower
    ext = np.array([[1.2, 1.4, 1.6], [1.5, 1.5, 1.5], [1.5, 1.8, 1.1]])
    pts = torch.from_numpy(np.stack([_box(e, seed=i) for i, e in enumerate(ext)]))
    ids = torch.tensor([1, -1, 1])
    out = calibrate_points(pts, ids, q_m, q_d, max_scale=1.5)
    got = latent_extents(out)
    assert torch.allclose(got[0], torch.tensor([1.2, 1.4 * 1.25, 1.6 * 0.8]), atol=1e-4)
    assert torch.equal(out[1], pts[1])                                          # unconditional: untouched
    centre = lambda p: (p.amax(-2) + p.amin(-2)) / 2
    assert torch.allclose(centre(out), centre(pts), atol=1e-5)
    # category 0 maps onto itself
    same = calibrate_points(pts, torch.tensor([0, 0, 0]), q_m, q_d, 1.5)
    assert torch.allclose(same, pts, atol=1e-5)


def _tiny_train(cats: list[str]) -> PointSets:
    """Per category, boxes whose height is 1.5 times that of the model's own samples' typical box."""
    rng = np.random.default_rng(1)
    pts, labels = [], []
    for c in range(len(cats)):
        for i in range(12):
            pts.append(_box(np.array([0.6, 0.9 + 0.1 * c, 0.5]) * rng.uniform(0.9, 1.1, 3), n=300, seed=i))
            labels.append(c)
    return PointSets(np.stack(pts), np.array(labels), list(cats))


def test_fit_save_load_and_sample_with_an_extent_calibration(tmp_path):
    torch.manual_seed(0)
    cfg = tiny_config(["chair", "table"])
    plain = tmp_path / "plain"
    PointsModel(cfg).save(plain)
    assert not (plain / CALIBRATION).exists()
    model = PointsModel.load(plain, calibration=CalibrationConfig(extents=True, quantiles=5, max_scale=3.0))
    sampler = LatentSampler(model)
    cond = sampler.condition(torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="never fitted"):
        sampler.run(cond, n_points=64, steps=2, generator=torch.Generator().manual_seed(0),
                    category_ids=torch.tensor([0, 1]))
    train = _tiny_train(["chair", "table"])
    seen = []
    logs = fit_extent_calibration(model, train, 6, steps=2, batch=4, n_points=128,
                                  progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (12, 12) and set(logs) == {"chair", "table"}
    assert bool((model.extent_q_model > 0).all()) and bool((model.extent_q_data > 0).all())
    model.save_calibration(plain)
    assert (plain / CALIBRATION).is_file() and checkpoint_complete(plain) == (True, "")
    assert json.loads((plain / "config.json").read_text())["calibration"]["extents"] is True

    loaded = PointsModel.load(plain)
    assert torch.equal(loaded.extent_q_data, model.extent_q_data)
    s = LatentSampler(loaded)
    kw = dict(n_points=128, steps=2, guidance=1.0)
    raw = s.run(cond, generator=torch.Generator().manual_seed(3), **kw)
    cal = s.run(cond, generator=torch.Generator().manual_seed(3), category_ids=torch.tensor([0, 1]), **kw)
    # same shapes, only the axis scales moved, toward the data's extents
    e_raw, e_cal = latent_extents(raw), latent_extents(cal)
    data = torch.from_numpy(np.stack([latent_extents(torch.from_numpy(train.points[train.labels == c])).median(0)
                                      .values.numpy() for c in range(2)]))
    assert ((e_cal - data).abs() <= (e_raw - data).abs() + 1e-5).float().mean() >= 0.8
    assert not torch.allclose(raw, cal)

    # a calibration file is part of the checkpoint once config.json turns it on
    (plain / CALIBRATION).unlink()
    ok, why = checkpoint_complete(plain)
    assert not ok and "--stage calibrate" in why
    assert checkpoint_complete(plain, calibration=False) == (True, "")   # what the stage that refits it asks
    with pytest.raises(FileNotFoundError, match="calibration.safetensors is missing"):
        PointsModel.load(plain)
    # saving a model without a calibration removes a stale table file
    model.save_calibration(plain)
    PointsModel(cfg).save(plain)
    assert not (plain / CALIBRATION).exists()


def test_calibration_config_is_checked():
    cfg = tiny_config(["chair"])
    cfg.calibration = CalibrationConfig(extents=True, quantiles=1)
    with pytest.raises(ValueError, match="quantiles must be at least 2"):
        PointsModel(cfg)


def test_fit_needs_data_of_every_category():
    model = PointsModel(tiny_config(["chair", "table"]))
    with pytest.raises(ValueError, match="needs a model config with calibration.extents"):
        fit_extent_calibration(model, _tiny_train(["chair", "table"]), 2)
    cfg = tiny_config(["chair", "table"])
    cfg.calibration.extents = True
    with pytest.raises(ValueError, match="no shapes of table"):
        fit_extent_calibration(PointsModel(cfg), _tiny_train(["chair"]), 2)


def _calibrated_copy(src, dst, cats) -> None:
    import shutil
    shutil.copytree(src, dst)
    model = PointsModel.load(dst, calibration=CalibrationConfig(extents=True, quantiles=5, max_scale=3.0))
    fit_extent_calibration(model, _tiny_train(cats), 4, steps=2, batch=4, n_points=128)
    model.save_calibration(dst)


def test_pipeline_calibrates_fresh_category_samples_only(tmp_path):
    import trimesh

    from engine.pipelines.points import PointsPipeline
    from points_job_context import RecordingContext

    torch.manual_seed(0)
    plain = tmp_path / "plain"
    PointsModel(tiny_config(["chair", "table"])).save(plain)
    _calibrated_copy(plain, tmp_path / "cal", ["chair", "table"])
    a, b = PointsPipeline(plain), PointsPipeline(tmp_path / "cal")
    gen = {"category": "table", "count": 2, "steps": 2, "n_points": 128, "seed": 5}
    ra = a.run("generate", a.validate("generate", gen), RecordingContext())
    rb = b.run("generate", b.validate("generate", gen), RecordingContext())
    ea = np.stack([np.ptp(r.arrays["points"], 0) for r in ra])
    eb = np.stack([np.ptp(r.arrays["points"], 0) for r in rb])
    assert not np.allclose(ea, eb, rtol=1e-3)
    # the same shapes, rescaled per axis: the points' centres stay
    mid = lambda rs: np.stack([(r.arrays["points"].max(0) + r.arrays["points"].min(0)) / 2 for r in rs])
    assert np.allclose(mid(ra), mid(rb), atol=1e-4)
    # refine keeps the input's proportions: no calibration
    box = trimesh.creation.box(extents=(2.0, 1.0, 0.5))
    ref = {"strength": 0.5, "steps": 2, "seed": 1, "category": "table", "n_points": 128,
           "arrays": {"points": np.asarray(box.sample(500, seed=0), np.float32)}}
    fa = a.run("refine", a.validate("refine", ref), RecordingContext())[0].arrays["points"]
    fb = b.run("refine", b.validate("refine", ref), RecordingContext())[0].arrays["points"]
    assert np.array_equal(fa, fb)


def test_train_points_calibrate_stage_from_the_command_line(tmp_path):
    from dataclasses import asdict

    from engine.cli import main

    out = tmp_path / "ckpt"
    torch.manual_seed(0)
    PointsModel(tiny_config(["chair", "mug"])).save(out)
    weights = (out / "model.safetensors").read_bytes()
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"model": asdict(tiny_config([])) | {"calibration": {"quantiles": 4}},
                               "train": {"calibration_samples": 3, "val_steps": 2, "val_shapes": 4}}))
    args = ["train", "points", "--data", "procedural", "--out", str(out), "--config", str(cfg), "--stage",
            "calibrate", "--categories", "chair,mug", "--shapes-per-category", "3", "--threads", "1"]
    assert main(args) == 0
    assert (out / "model.safetensors").read_bytes() == weights           # the weights are untouched
    written = json.loads((out / "config.json").read_text())["calibration"]
    assert written == {"extents": True, "quantiles": 4, "max_scale": 1.5}
    assert PointsModel.load(out).extent_q_data.shape == (2, 3, 4)
    with pytest.raises(SystemExit, match="no trained model to calibrate"):
        main(args[:5] + [str(tmp_path / "none")] + args[6:])
