"""`python -m engine.models.points.evaluate` on a tiny untrained checkpoint: the report's shape."""

from __future__ import annotations

import json

import pytest
import torch

from engine.models.points.evaluate import main


def _run(tiny_ckpt, tmp_path, *extra: str) -> dict:
    torch.set_num_threads(1)
    out = tmp_path / "eval.json"
    assert main(["--ckpt", str(tiny_ckpt), "--per-category", "2", "--categories", "chair", "--floor",
                 "--samples-out", str(tmp_path / "samples"), "--out", str(out), *extra]) == 0
    return json.loads(out.read_text())


def test_evaluate_reports_every_metric_per_category_and_the_floor(tiny_ckpt, tmp_path):
    res = _run(tiny_ckpt, tmp_path, "--workers", "2")
    row = res["categories"]["chair"]
    assert res["device"] == "cpu" and res["per_category"] == 2 and list(res["categories"]) == ["chair"]
    for m in (row["sample"], row["floor_train_vs_test"]):
        assert 0.0 <= m["1nna_cd"] <= 1.0 and 0.0 <= m["1nna_emd"] <= 1.0 and m["n_generated"] == 2
    # an untrained model's samples are told apart from real chairs; train chairs are far less so
    assert row["sample"]["mmd_cd"] > row["floor_train_vs_test"]["mmd_cd"]
    assert row["recon_chamfer_test"] > 0 and res["mean"]["recon_chamfer_test"] == row["recon_chamfer_test"]
    assert (tmp_path / "samples" / "chair.npz").is_file()


@pytest.mark.cuda
def test_evaluate_on_cuda(tiny_ckpt, tmp_path):
    res = _run(tiny_ckpt, tmp_path, "--device", "cuda", "--no-emd")
    assert res["device"] == "cuda" and res["categories"]["chair"]["sample"]["1nna_emd"] is None
