"""`latentforge train points`: train the point model (VAE, then the latent priors)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def register_train(train_subparsers: argparse._SubParsersAction) -> None:
    p = train_subparsers.add_parser(
        "points", help="train the LION-style latent point diffusion model",
        description="Train the point VAE and its two latent diffusion priors. DATA is a folder built by "
                    "`latentforge dataset build`, or the word `procedural` to draw shapes directly from the "
                    "procedural generator (train split; val split for validation).")
    p.add_argument("--data", required=True, help="dataset folder, or `procedural`")
    p.add_argument("--out", required=True, help="checkpoint folder to write (config.json, model.safetensors)")
    p.add_argument("--config", help="JSON file: {\"model\": {...PointsConfig}, \"train\": {...TrainConfig}}")
    p.add_argument("--stage", choices=("vae", "code", "prior", "expert", "decoder", "joint", "calibrate", "all"),
                   default="all",
                   help="all: vae, then code (when the model config has global_prior.shape_code > 0), "
                        "then prior, then expert (when it has point_prior.expert_t > 0: the low-noise "
                        "point prior), then decoder / joint when the config gives them decoder_iters / "
                        "joint_iters > 0, then calibrate when it has calibration.extents. calibrate alone: "
                        "fit the extent calibration of the trained model in --out (writes "
                        "calibration.safetensors and turns it on in config.json; weights untouched)")
    p.add_argument("--resume", action="store_true", help="continue from <state> where a stage stopped")
    p.add_argument("--state", help="folder for resumable training state (default: <out>/../<name>-state)")
    p.add_argument("--categories", help="comma-separated categories (default: all available)")
    p.add_argument("--shapes-per-category", type=int, default=400, help="procedural data: train shapes per category")
    p.add_argument("--vae-minutes", type=float, help="wall-clock budget of the VAE stage")
    p.add_argument("--prior-minutes", type=float, help="wall-clock budget of the prior stage")
    p.add_argument("--expert-minutes", type=float, help="wall-clock budget of the expert stage")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch default)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import torch

    from engine.device import resolve_device

    from .config import PointsConfig
    from .data import available_categories, load_dataset_dir, load_procedural
    from .train import TrainConfig, Trainer, save_train_config

    if args.threads:
        torch.set_num_threads(args.threads)
    # Under torchrun every process runs this; only rank 0 reports.
    say = print if int(os.environ.get("RANK", "0")) == 0 else (lambda *_a, **_k: None)
    device = resolve_device(args.device)
    raw = json.loads(Path(args.config).read_text()) if args.config else {}
    cfg = PointsConfig.from_dict(raw.get("model", {}))
    tcfg = TrainConfig.from_dict(raw.get("train", {}))
    if args.vae_minutes is not None:
        tcfg.vae_minutes = args.vae_minutes
    if args.prior_minutes is not None:
        tcfg.prior_minutes = args.prior_minutes
    if args.expert_minutes is not None:
        tcfg.expert_minutes = args.expert_minutes
    out = Path(args.out)
    state = Path(args.state) if args.state else out.parent / f"{out.name}-state"
    state.mkdir(parents=True, exist_ok=True)

    if args.data == "procedural":
        cats = args.categories.split(",") if args.categories else available_categories()
        cache = state / "data"
        train = load_procedural(cats, "train", args.shapes_per_category, cache=cache)
        val = load_procedural(cats, "val", max(4, tcfg.val_per_category, tcfg.val_shapes // max(1, len(cats))),
                              cache=cache)
    else:
        cats = args.categories.split(",") if args.categories else None
        train = load_dataset_dir(args.data, "train", cats, n_points=cfg.n_points)
        val = load_dataset_dir(args.data, "val", train.categories, n_points=cfg.n_points)
    cfg.cond.categories = list(train.categories)
    say(f"training on {len(train)} shapes ({', '.join(train.categories)}); {len(val)} val shapes; device {device}")
    save_train_config(state / "train_config.json", tcfg)

    trainer = Trainer(cfg, tcfg, train, val, out, state, device)

    def done(stage: str) -> bool:
        return args.resume and trainer.stage_done(stage)

    def load_vae() -> None:
        # A stage run alone starts from the model folder's VAE; under `all` the vae stage
        # has trained or loaded it already.
        if not trainer.load_model_if_any(vae_only=True):
            raise SystemExit(f"no trained VAE in {out}; run --stage vae first")

    if args.stage in ("vae", "all"):
        if not done("vae"):
            trainer.train_vae(resume=args.resume)
        elif not trainer.load_model_if_any(vae_only=True):
            raise SystemExit("VAE state says done but no model in --out")
    code = cfg.global_prior.shape_code > 0
    if args.stage == "code" or (args.stage == "all" and code):
        if not code:
            raise SystemExit("--stage code needs a model config with global_prior.shape_code > 0")
        if args.stage == "code":
            load_vae()
        if args.stage == "code" or not done("code"):
            trainer.train_code(resume=args.resume)
    if args.stage in ("prior", "all"):
        if args.stage == "prior":
            load_vae()
        if code and not trainer.has_state("code"):
            raise SystemExit(f"the shape code is not trained in {state}; run --stage code first")
        if args.stage == "prior" or not done("prior"):
            trainer.train_prior(resume=args.resume)
    expert = cfg.point_prior.expert_t > 0
    if args.stage == "expert" or (args.stage == "all" and expert):
        if not expert:
            raise SystemExit("--stage expert needs a model config with point_prior.expert_t > 0")
        if args.stage == "expert" and not trainer.load_model_if_any():
            raise SystemExit(f"no trained model in {out}; run the vae and prior stages first")
        if args.stage == "expert" or not done("expert"):
            trainer.train_prior(resume=args.resume, expert=True)
    if args.stage == "decoder" or (args.stage == "all" and tcfg.decoder_iters > 0):
        if not trainer.load_model_if_any():
            raise SystemExit(f"no trained model in {out}; run the vae and prior stages first")
        trainer.train_decoder(resume=args.resume)
    if args.stage == "joint" or (args.stage == "all" and tcfg.joint_iters > 0):
        if not trainer.load_model_if_any():
            raise SystemExit(f"no trained model in {out}; run the vae and prior stages first")
        trainer.train_joint(resume=args.resume)
    if args.stage == "calibrate" or (args.stage == "all" and cfg.calibration.extents):
        if int(os.environ.get("RANK", "0")) == 0:   # sampling, not training: one process does it
            _calibrate(out, raw.get("model", {}).get("calibration", {}), train, tcfg, device, say)
    say(f"model written to {out}")
    return 0


def _calibrate(out: Path, overrides: dict, train, tcfg, device: str, say) -> None:
    """Fit the extent calibration of the trained model in ``out`` and save it (config.json +
    calibration.safetensors); ``overrides``: the --config's model ``calibration`` section."""
    from tqdm import tqdm

    from .calibration import fit_extent_calibration
    from .checkpoint import checkpoint_complete
    from .config import CalibrationConfig
    from .model import PointsModel

    ok, why = checkpoint_complete(out, calibration=False)
    if not ok:
        raise SystemExit(f"no trained model to calibrate: {why}")
    cal = CalibrationConfig(**{**{k: v for k, v in overrides.items() if k in CalibrationConfig.__dataclass_fields__},
                               "extents": True})
    model = PointsModel.load(out, device=device, calibration=cal)
    bar = tqdm(total=tcfg.calibration_samples * len(model.cfg.cond.categories), desc="calibrate", mininterval=5)

    def progress(done: int, _total: int) -> None:
        bar.update(done - bar.n)

    logs = fit_extent_calibration(model, train, tcfg.calibration_samples, seed=tcfg.calibration_seed,
                                  steps=tcfg.val_steps, progress=progress)
    bar.close()
    model.save_calibration(out)
    say("extent calibration, mean |log scale| per category: "
        + ", ".join(f"{c} {v:.3f}" for c, v in logs.items()))

