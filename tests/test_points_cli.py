"""`latentforge train points` end to end on a few procedural shapes with a tiny config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict

import pytest
import torch

from engine.cli import main
from engine.models.points.config import tiny_config
from engine.pipelines.points import PointsPipeline

# A few steps of every stage on a tiny model (seconds); tests add the stages they run.
TINY_TRAIN = {"vae_iters": 3, "prior_iters": 3, "vae_batch": 4, "prior_batch": 4, "n_enc_points": 256,
              "n_rec_points": 128, "encode_repeats": 1, "val_shapes": 4, "ckpt_every_s": 1e9, "val_every_s": 0}
DECODER_STAGE = {"decoder_iters": 2, "decoder_batch": 2, "decoder_emd_points": 64}


def _write_config(tmp_path, train: dict):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"model": asdict(tiny_config([])) | {"n_points": 256}, "train": train}))
    return path


def test_train_points_command_writes_a_usable_checkpoint(tmp_path):
    torch.set_num_threads(1)
    # val_every_s as by default: the prior stage ends with a validation
    cfg = _write_config(tmp_path, TINY_TRAIN | {"vae_iters": 4, "prior_iters": 4, "val_every_s": 600})
    out = tmp_path / "ckpt"
    args = ["train", "points", "--data", "procedural", "--out", str(out), "--config", str(cfg),
            "--categories", "chair,mug", "--shapes-per-category", "4", "--threads", "1"]
    assert main(args) == 0
    written = json.loads((out / "config.json").read_text())
    assert written["cond"]["categories"] == ["chair", "mug"]
    state = tmp_path / "ckpt-state"
    assert json.loads((state / "vae.json").read_text())["done"] is True
    assert json.loads((state / "prior.json").read_text())["step"] == 4
    # resuming a finished run trains nothing more and keeps the model usable
    assert main(args + ["--resume"]) == 0
    assert json.loads((state / "prior.json").read_text())["step"] == 4
    pipe = PointsPipeline(out)
    assert pipe.status()["available"] and pipe.categories() == ["chair", "mug"]


def test_train_points_decoder_stage_from_the_command_line(tmp_path):
    torch.set_num_threads(1)
    cfg = _write_config(tmp_path, TINY_TRAIN | DECODER_STAGE)
    out = tmp_path / "ckpt"
    base = ["train", "points", "--data", "procedural", "--out", str(out), "--config", str(cfg),
            "--categories", "mug", "--shapes-per-category", "2", "--threads", "1"]
    # --stage all runs the decoder stage too when the config gives it decoder_iters
    assert main(base) == 0
    meta = json.loads((tmp_path / "ckpt-state" / "decoder.json").read_text())
    assert meta["step"] == 2 and meta["done"] and meta["val_emd"] > 0
    assert PointsPipeline(out).status()["available"]
    # the stage alone needs a trained model
    empty = ["train", "points", "--data", "procedural", "--out", str(tmp_path / "none"), "--config",
             str(cfg), "--categories", "mug", "--shapes-per-category", "2", "--stage", "decoder"]
    with pytest.raises(SystemExit, match="run the vae and prior stages first"):
        main(empty)


def test_train_points_with_a_shape_code_runs_the_code_stage(tmp_path):
    torch.set_num_threads(1)
    model = asdict(tiny_config([])) | {"n_points": 256}
    model["global_prior"]["shape_code"] = 4
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"model": model, "train": TINY_TRAIN | {"code_iters": 3, "code_batch": 4}}))
    out, state = tmp_path / "ckpt", tmp_path / "ckpt-state"
    base = ["train", "points", "--data", "procedural", "--out", str(out), "--config", str(cfg),
            "--categories", "mug", "--shapes-per-category", "2", "--threads", "1"]
    # the priors need the code: alone, the prior stage says so
    assert main(base + ["--stage", "vae"]) == 0
    with pytest.raises(SystemExit, match="run --stage code first"):
        main(base + ["--stage", "prior"])
    # --stage all runs vae, code and prior in order (resuming the finished VAE)
    assert main(base + ["--resume"]) == 0
    assert json.loads((state / "code.json").read_text())["done"] is True
    assert json.loads((state / "prior.json").read_text())["step"] == 3
    pipe = PointsPipeline(out)
    assert pipe.status()["available"]
    assert json.loads((out / "config.json").read_text())["global_prior"]["shape_code"] == 4


def test_train_points_expert_stage_from_the_command_line(tmp_path):
    torch.set_num_threads(1)
    model = asdict(tiny_config([])) | {"n_points": 256, "weights_dtype": "float16"}
    model["point_prior"]["expert_t"] = 200
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"model": model, "train": TINY_TRAIN | {"expert_iters": 2}}))
    out, state = tmp_path / "ckpt", tmp_path / "ckpt-state"
    base = ["train", "points", "--data", "procedural", "--out", str(out), "--config", str(cfg),
            "--categories", "mug", "--shapes-per-category", "2", "--threads", "1"]
    # the stage alone needs a trained model
    with pytest.raises(SystemExit, match="run the vae and prior stages first"):
        main(base + ["--stage", "expert"])
    # --stage all runs vae, prior and expert in order
    assert main(base) == 0
    assert json.loads((state / "expert.json").read_text())["done"] is True
    # alone, on the folder's model, with a larger budget: resumed from its own state
    cfg.write_text(json.dumps({"model": model, "train": TINY_TRAIN | {"expert_iters": 4}}))
    assert main(base + ["--stage", "expert", "--resume"]) == 0
    assert json.loads((state / "expert.json").read_text())["step"] == 4
    pipe = PointsPipeline(out)
    assert pipe.status()["available"]
    assert json.loads((out / "config.json").read_text())["point_prior"]["expert_t"] == 200
    # a folder without expert weights (trained before its config had one) loads with the
    # point prior in the expert's place
    from engine.models.points.config import PointsConfig
    from engine.models.points.model import PointsModel
    from engine.models.points.train import TrainConfig, Trainer
    plain_dir = tmp_path / "plain_ckpt"
    pcfg = PointsConfig.load(out / "config.json")
    pcfg.point_prior.expert_t = 0
    PointsModel(pcfg).save(plain_dir)
    ecfg = PointsConfig.load(out / "config.json")
    tr = Trainer(ecfg, TrainConfig(), None, None, plain_dir, tmp_path / "s2", log=lambda *_: None)
    assert tr.load_model_if_any()
    assert torch.equal(tr.model.point_prior_low.out.weight, tr.model.point_prior.out.weight)
    # without an expert in the config the stage says what is missing
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"model": asdict(tiny_config([])) | {"n_points": 256}, "train": TINY_TRAIN}))
    with pytest.raises(SystemExit, match="point_prior.expert_t"):
        main(["train", "points", "--data", "procedural", "--out", str(out), "--config", str(plain),
              "--categories", "mug", "--shapes-per-category", "2", "--stage", "expert"])


@pytest.mark.cuda
@pytest.mark.parametrize("world", [1, 2])
def test_train_points_all_stages_on_cuda(tmp_path, world):
    """Every stage on the GPU, alone and under torchrun with two processes on one machine
    (two processes share GPU 0 when there is one GPU: NCCL refuses that, so world 2 needs two)."""
    if world > torch.cuda.device_count():
        pytest.skip(f"needs {world} CUDA devices")
    cfg = _write_config(tmp_path, TINY_TRAIN | DECODER_STAGE | {
        "val_every_s": 1e-6, "val_per_category": 2, "val_steps": 2, "joint_iters": 2, "joint_batch": 2})
    out = tmp_path / "ckpt"
    args = ["train", "points", "--data", "procedural", "--out", str(out), "--config", str(cfg),
            "--categories", "chair,mug", "--shapes-per-category", "4", "--device", "cuda"]
    if world == 1:
        assert main(args) == 0
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(world), "-m", "engine.cli"]
        subprocess.run(cmd + args, check=True, env=os.environ | {"OMP_NUM_THREADS": "1"}, timeout=600)
    state = tmp_path / "ckpt-state"
    for stage, steps in (("vae", 3), ("prior", 3), ("decoder", 2), ("joint", 2)):
        meta = json.loads((state / f"{stage}.json").read_text())
        assert meta["step"] == steps and meta.get("done", True), (stage, meta)
    assert PointsPipeline(out).status()["available"]
    # the priors' validation (sampling on the GPU, 1-NNA of its samples) ran and was logged
    logged = [json.loads(line) for line in (state / "log.jsonl").read_text().splitlines()]
    assert any("val_1nna_cd" in r for r in logged)
