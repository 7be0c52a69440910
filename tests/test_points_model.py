"""Unit tests of the point model (tiny configs, CPU, seconds)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import trimesh

from engine.models.points.config import PointsConfig, tiny_config
from engine.models.points.data import PointSets
from engine.models.points.losses import chamfer, emd_matched, gaussian_kl
from engine.models.points.model import PointsModel, checkpoint_complete
from engine.models.points.sampler import Hooks, LatentSampler
from engine.models.points.train import TrainConfig, Trainer
from engine.models.points.layers import farthest_point_sample

torch.set_num_threads(1)


def primitive_sets(n_per: int = 6, pool: int = 512) -> PointSets:
    """Boxes and spheres of random proportions, fitted to [-1, 1]^3."""
    rng = np.random.default_rng(0)
    pts, labels = [], []
    for i in range(n_per * 2):
        if i % 2 == 0:
            m = trimesh.creation.box(extents=rng.uniform(0.3, 2.0, 3))
        else:
            m = trimesh.creation.icosphere(2, radius=1.0)
            m.apply_scale(rng.uniform(0.4, 1.0, 3))
        p, _ = trimesh.sample.sample_surface(m, pool, seed=i)
        p = p - (p.max(0) + p.min(0)) / 2
        pts.append(p / np.abs(p).max())
        labels.append(i % 2)
    return PointSets(np.asarray(pts, np.float32), np.asarray(labels), ["box", "sphere"])


def test_chamfer_matches_bruteforce_value_and_gradient():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 300, 3, generator=g, requires_grad=True)
    b = torch.rand(2, 200, 3, generator=g)
    ours = chamfer(a, b, chunk=64)
    d = torch.cdist(a, b) ** 2
    ref = d.min(2).values.mean(1) + d.min(1).values.mean(1)
    assert torch.allclose(ours, ref, atol=1e-6)
    (ga,) = torch.autograd.grad(ours.sum(), a)
    (gr,) = torch.autograd.grad(ref.sum(), a)
    assert torch.allclose(ga, gr, atol=1e-5)
    assert chamfer(b, b).abs().max() < 1e-10


def test_emd_matched_is_the_exact_emd_and_its_gradient_spreads_points():
    from engine.eval.emd_exact import emd_pair
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 64, 3, generator=g, requires_grad=True)
    b = torch.rand(2, 64, 3, generator=g)
    ours = emd_matched(a, b)
    ref = [emd_pair(a[i].detach().double().numpy(), b[i].double().numpy()) for i in range(2)]
    assert np.allclose(ours.detach().numpy(), ref, atol=1e-6)
    assert emd_matched(b, b[:, torch.randperm(64, generator=g)]).abs().max() < 1e-6
    # All points bunched at one target point: Chamfer's gradient leaves most of them there
    # (only the nearest one is pulled to each other target), EMD's moves every one of them.
    bunched = b[:1, :1].expand(1, 64, 3).clone().requires_grad_(True)
    (g_emd,) = torch.autograd.grad(emd_matched(bunched, b[:1]).sum(), bunched)
    (g_cd,) = torch.autograd.grad(chamfer(bunched, b[:1]).sum(), bunched)
    moved = lambda grad: int((grad.norm(dim=-1) > 1e-9).sum())
    assert moved(g_emd) >= 63 and moved(g_cd) <= 2
    with pytest.raises(ValueError):
        emd_matched(a, b[:, :32])


def test_kl_is_zero_for_standard_normal():
    assert gaussian_kl(torch.zeros(3, 4), torch.zeros(3, 4)).abs().max() == 0
    assert (gaussian_kl(torch.ones(3, 4), torch.zeros(3, 4)) > 0).all()


def test_fps_spreads_points():
    x = torch.cat([torch.zeros(1, 100, 3), torch.ones(1, 1, 3)], 1)
    idx = farthest_point_sample(x, 2, torch.Generator().manual_seed(0))
    assert 100 in idx[0].tolist()


def test_vae_shapes_and_any_number_of_points():
    cfg = tiny_config(["a", "b"])
    m = PointsModel(cfg)
    x = torch.rand(3, 256, 3) * 2 - 1
    post = m.vae.encode(x)
    assert post["z_mu"].shape == (3, cfg.vae.global_dim)
    assert post["h_mu"].shape == (3, cfg.vae.n_latent_points, 3 + cfg.vae.point_feat_dim)
    for n in (17, 256, 1000):
        assert m.vae.decode(post["z_mu"], post["h_mu"], n).shape == (3, n, 3)


def _trainer(tmp_path, **kw) -> Trainer:
    sets = primitive_sets()
    cfg = tiny_config(sets.categories)
    tcfg = TrainConfig(vae_batch=4, n_enc_points=256, n_rec_points=256, prior_batch=8, encode_repeats=1,
                       val_shapes=4, ckpt_every_s=1e9, **kw)
    return Trainer(cfg, tcfg, sets, sets, tmp_path / "ckpt", tmp_path / "state", log=lambda *_: None)


def test_vae_training_reduces_reconstruction_error(tmp_path):
    torch.manual_seed(0)
    tr = _trainer(tmp_path, vae_iters=150, vae_lr=3e-3, lr_warmup=10, kl_warmup=100)
    before = tr.val_reconstruction()
    tr.train_vae()
    after = tr.val_reconstruction()
    assert after < 0.7 * before, (before, after)
    assert checkpoint_complete(tmp_path / "ckpt")[0]


def test_prior_training_resumes_and_sampling_works(tmp_path):
    tr = _trainer(tmp_path, vae_iters=5, prior_iters=6)
    tr.train_vae()
    tr.train_prior()
    tr2 = _trainer(tmp_path, vae_iters=5, prior_iters=10)
    tr2.load_model_if_any()
    tr2.train_prior(resume=True)
    log = (tmp_path / "state" / "log.jsonl").read_text()
    assert '"stage": "prior"' in log
    assert (tmp_path / "state" / "prior.json").read_text().startswith('{"step": 10')

    model = PointsModel.load(tmp_path / "ckpt")
    assert torch.all(model.z_std > 0)
    s = LatentSampler(model)
    cond = s.condition(torch.tensor([0, 1, -1]))
    seen = {"steps": 0, "previews": 0}

    def step(stage, k, total):
        seen["steps"] += 1

    def preview(points, stage):
        assert points.shape == (3, 64, 3)
        seen["previews"] += 1

    hooks = Hooks(step=step, want_preview=lambda k: True, preview=preview, preview_points=64)
    out = s.run(cond, n_points=300, steps=4, guidance=2.0, hooks=hooks, generator=torch.Generator().manual_seed(0))
    assert out.shape == (3, 300, 3) and torch.isfinite(out).all()
    assert seen["steps"] == 8 and seen["previews"] == 3

    # cancellation: an exception from the step hook stops the loop
    class Stop(Exception):
        pass

    def cancel(stage, k, total):
        raise Stop

    with pytest.raises(Stop):
        s.run(cond, steps=4, hooks=Hooks(step=cancel))


def test_sdedit_strength_zero_is_reconstruction_and_save_load_roundtrip(tmp_path):
    sets = primitive_sets(2)
    cfg = tiny_config(sets.categories)
    model = PointsModel(cfg).eval()
    model.save(tmp_path / "m")
    again = PointsModel.load(tmp_path / "m")
    s1, s2 = LatentSampler(model), LatentSampler(again)
    x = torch.from_numpy(sets.points[:1, :256])
    z, h = s1.encode(x, torch.Generator().manual_seed(0))
    cond = s1.condition(torch.tensor([0]))
    rec = s1.run(cond, n_points=128, z_init=z, h_init=h, strength=0.0, generator=torch.Generator().manual_seed(1))
    ref = s1.decode(z, h, 128, torch.Generator().manual_seed(1))
    assert torch.allclose(rec, ref)
    a = s1.run(cond, n_points=64, steps=3, z_init=z, h_init=h, strength=0.5, generator=torch.Generator().manual_seed(2),
               z_noise=torch.zeros(1, cfg.vae.global_dim))
    b = s2.run(cond, n_points=64, steps=3, z_init=z, h_init=h, strength=0.5, generator=torch.Generator().manual_seed(2),
               z_noise=torch.zeros(1, cfg.vae.global_dim))
    assert torch.allclose(a, b, atol=1e-5)


def test_config_roundtrip(tmp_path):
    cfg = tiny_config(["x"])
    cfg.save(tmp_path / "c.json")
    assert PointsConfig.load(tmp_path / "c.json") == cfg


def test_ddim_inversion_roundtrip_and_interpolation():
    from engine.models.points.sampler import interpolate, slerp
    torch.manual_seed(0)
    sets = primitive_sets(1)
    model = PointsModel(tiny_config(sets.categories)).eval()
    # A zero epsilon model makes DDIM exactly invertible, so the round trip tests the
    # schedule bookkeeping (timesteps, alphas) of inversion against diffusers' DDIM sampling.
    for lin in (model.global_prior.out[-1], model.point_prior.out):
        torch.nn.init.zeros_(lin.weight)
        torch.nn.init.zeros_(lin.bias)
    s = LatentSampler(model)
    x = torch.from_numpy(sets.points[:2, :256])
    cond = model.cond.null[None].expand(2, -1)
    z, h = s.encode(x, torch.Generator().manual_seed(0))
    zT, hT = s.ddim_invert(z, h, cond, steps=50)
    assert zT.abs().mean() < 0.5 * z.abs().mean()        # really moved to the first sampling level (eps = 0)
    _, z0, h0 = s.run(cond, steps=50, guidance=1.0, sampler="ddim", z_noise=zT, h_noise=hT, return_latents=True)
    assert torch.allclose(z0, z, atol=1e-3) and torch.allclose(h0, h, atol=1e-3)
    a, b = torch.randn(1, 8), torch.randn(1, 8)
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-5) and torch.allclose(slerp(a, b, 1.0), b, atol=1e-5)
    out = interpolate(s, x[0], x[1], 3, steps=5, n_points=64)
    assert out.shape == (3, 64, 3) and torch.isfinite(out).all()


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_model_output_converts_to_epsilon_and_x0(prediction_type):
    from engine.models.points.config import DiffusionConfig
    from engine.models.points.sampler import eps_and_x0, train_scheduler
    sched = train_scheduler(DiffusionConfig(prediction_type=prediction_type))
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(4, 8, 3, generator=g).clamp(-3, 3), torch.randn(4, 8, 3, generator=g)
    t = torch.tensor([0, 10, 500, 990])
    a = sched.alphas_cumprod[t].view(-1, 1, 1)
    xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
    out = a.sqrt() * eps - (1 - a).sqrt() * x0 if prediction_type == "v_prediction" else eps
    e, x = eps_and_x0(sched, xt, out, t)
    # Far into the schedule epsilon-prediction cannot recover x0 to this precision (divides by sqrt(a)).
    ok = slice(None) if prediction_type == "v_prediction" else slice(0, 3)
    assert torch.allclose(x[ok], x0[ok], atol=1e-3) and torch.allclose(e[ok], eps[ok], atol=1e-2)


def test_v_prediction_min_snr_training_validates_and_keeps_best(tmp_path):
    tr = _trainer(tmp_path, vae_iters=5, prior_iters=6, min_snr_gamma=5.0, val_every_s=1e9, val_per_category=4,
                  val_steps=3)
    tr.cfg.diffusion.prediction_type = "v_prediction"
    tr.cfg.diffusion.timestep_spacing = "trailing"
    tr.cfg.diffusion.sample_t_max = 1.0
    tr.train_vae()
    tr.train_prior()
    log = (tmp_path / "state" / "log.jsonl").read_text()
    assert '"val_1nna_cd"' in log
    best = PointsModel.load(tmp_path / "state" / "best")
    assert best.cfg.diffusion.prediction_type == "v_prediction"
    s = LatentSampler(best)
    out = s.run(s.condition(torch.tensor([0, 1])), n_points=128, steps=3, guidance=1.5,
                generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 128, 3) and torch.isfinite(out).all()


def test_remove_outliers_drops_stray_points_and_keeps_the_count():
    from engine.models.points.cleanup import remove_outliers
    g = torch.Generator().manual_seed(0)
    surf = torch.nn.functional.normalize(torch.randn(2, 1000, 3, generator=g), dim=-1)
    stray = torch.nn.functional.normalize(torch.randn(2, 20, 3, generator=g), dim=-1) * 1.6
    pts = torch.cat([surf, stray], 1)
    out = remove_outliers(pts, 900, k=8, std_ratio=1.5, generator=g)
    assert out.shape == (2, 900, 3)
    r = out.norm(dim=-1)
    assert (r < 1.01).all()                      # every stray point is gone
    assert len(torch.unique(out[0], dim=0)) == 900
    # more asked than inliers exist: the least sparse outliers fill up, no error
    assert remove_outliers(pts, 1020, k=8).shape == (2, 1020, 3)


def test_decode_cleanup_follows_the_config():
    sets = primitive_sets()
    cfg = tiny_config(sets.categories)
    cfg.cleanup.enabled = True
    s = LatentSampler(PointsModel(cfg).eval())
    z = torch.randn(2, cfg.vae.global_dim)
    h = torch.randn(2, cfg.vae.n_latent_points, 3 + cfg.vae.point_feat_dim)
    assert s.decode(z, h, 200).shape == (2, 200, 3)
    assert s.decode(z, h, 200, clean=False).shape == (2, 200, 3)


def test_decoder_stage_changes_only_the_decoder_and_resumes(tmp_path):
    tr = _trainer(tmp_path, vae_iters=5, prior_iters=5, decoder_iters=3, decoder_batch=4, decoder_emd_points=64,
                  val_every_s=0)
    tr.train_vae()
    tr.train_prior()
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    tr.train_decoder()
    after = tr.model.state_dict()
    changed = {k for k in after if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("vae.decoder.") for k in changed)
    meta = json.loads((tmp_path / "state" / "decoder.json").read_text())
    assert meta["step"] == 3 and meta["done"] and meta["val_emd"] > 0
    tr2 = _trainer(tmp_path, vae_iters=5, prior_iters=5, decoder_iters=5, decoder_batch=4, decoder_emd_points=64,
                   val_every_s=0)
    assert tr2.load_model_if_any()
    tr2.train_decoder(resume=True)
    assert json.loads((tmp_path / "state" / "decoder.json").read_text())["step"] == 5
    saved = PointsModel.load(tmp_path / "ckpt").state_dict()
    assert all(torch.equal(saved[k], tr2.model.state_dict()[k].cpu()) for k in saved)
    log = (tmp_path / "state" / "log.jsonl").read_text()
    assert '"stage": "decoder"' in log and "val_emd" in log


def test_decoder_stage_with_sdedit_decodes_what_the_priors_make_of_the_latents(tmp_path, monkeypatch):
    from engine.models.points import sampler as sampler_mod
    tr = _trainer(tmp_path, vae_iters=5, prior_iters=5, decoder_iters=2, decoder_batch=4, decoder_emd_points=64,
                  val_every_s=0, decoder_sdedit=0.3, decoder_sdedit_frac=0.5, decoder_sdedit_steps=3)
    tr.train_vae()
    tr.train_prior()
    calls = []
    real = sampler_mod.LatentSampler.denoise

    def spy(self, cond, **kw):
        calls.append((cond.shape[0], kw["strength"], kw["steps"]))
        return real(self, cond, **kw)

    monkeypatch.setattr(sampler_mod.LatentSampler, "denoise", spy)
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    tr.train_decoder()
    after = tr.model.state_dict()
    changed = {k for k in after if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("vae.decoder.") for k in changed)
    # Half of each batch of 4, at a strength in [0.02, 0.3], with the configured steps.
    assert len(calls) == 2 and all(b == 2 and 0.02 <= st <= 0.3 and n == 3 for b, st, n in calls)


def test_joint_stage_trains_everything_and_resumes(tmp_path):
    tr = _trainer(tmp_path, vae_iters=5, prior_iters=5, joint_iters=4, joint_batch=4, val_every_s=0)
    tr.train_vae()
    tr.train_prior()
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    tr.train_joint()
    after = tr.model.state_dict()
    for prefix in ("vae.encoder.", "vae.decoder.", "point_prior.", "global_prior."):
        assert any(not torch.equal(before[k], after[k]) for k in after if k.startswith(prefix)), prefix
    assert json.loads((tmp_path / "state" / "joint.json").read_text())["step"] == 4
    tr2 = _trainer(tmp_path, vae_iters=5, prior_iters=5, joint_iters=6, joint_batch=4, val_every_s=0)
    tr2.load_model_if_any()
    tr2.train_joint(resume=True)
    assert json.loads((tmp_path / "state" / "joint.json").read_text())["step"] == 6
    out = LatentSampler(PointsModel.load(tmp_path / "ckpt")).run(torch.zeros(1, tr.cfg.cond.cond_dim), n_points=64,
                                                                 steps=2, guidance=1.0)
    assert torch.isfinite(out).all()


def test_extents_global_latent_samples_and_conditions_the_point_prior(tmp_path):
    from engine.models.points.model import latent_extents
    sets = primitive_sets(2)
    cfg = tiny_config(sets.categories)
    cfg.global_prior.extents = True
    model = PointsModel(cfg).eval()
    D = cfg.vae.global_dim
    assert model.global_latent_dim == D + 3 and model.z_mean.shape == (D + 3,)
    h = torch.tensor([[[0.0, -1.0, 0.5, 9.0], [2.0, 1.0, 0.25, -9.0]]])
    assert torch.allclose(latent_extents(h), torch.tensor([[2.0, 2.0, 0.25]]))
    s = LatentSampler(model)
    x = torch.from_numpy(sets.points[:2, :256])
    z, hn = s.encode(x, torch.Generator().manual_seed(0))
    assert z.shape == (2, D + 3)
    # The extent channels of an encoded shape are its latent points' extents.
    post = model.vae.encode(x, torch.Generator().manual_seed(0))
    assert torch.allclose(model.denorm_z(z)[:, D:], latent_extents(post["h_mu"]), atol=1e-5)
    # The decoder sees only the VAE's channels: changing the extent channels changes nothing there.
    z2 = z.clone()
    z2[:, D:] += 3.0
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    assert torch.allclose(s.decode(z, hn, 64, g()), s.decode(z2, hn, 64, g()))
    # ... but the point prior is conditioned on them.
    t = torch.tensor([500, 500])
    cond = s.condition(torch.tensor([0, 1]))
    torch.nn.init.normal_(model.point_prior.out_mod.weight, std=0.1)
    assert not torch.allclose(model.point_prior(hn, t, z, cond), model.point_prior(hn, t, z2, cond))
    out = s.run(cond, n_points=64, steps=3, guidance=1.5, generator=g())
    assert out.shape == (2, 64, 3) and torch.isfinite(out).all()


def test_fit_extents_scales_the_sampled_latent_points_to_the_generated_extents():
    from engine.models.points.model import latent_extents
    sets = primitive_sets(2)
    cfg = tiny_config(sets.categories)
    cfg.global_prior.extents = True
    with pytest.raises(ValueError, match="fit_extents needs"):
        bad = tiny_config(sets.categories)
        bad.global_prior.fit_extents = True
        PointsModel(bad)
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    D = cfg.vae.global_dim
    plain = PointsModel(cfg).eval()
    cfg2 = tiny_config(sets.categories)
    cfg2.global_prior.extents = cfg2.global_prior.fit_extents = True
    fitted = PointsModel(cfg2).eval()
    fitted.load_state_dict(plain.state_dict())
    # Latent statistics as after training: raw extents around 1, latent xyz spread ~0.5.
    for m in (plain, fitted):
        m.z_mean[D:] = 1.0
        m.z_std[D:] = 0.2
        m.h_std[:3] = 0.5
    cond = plain.cond(torch.tensor([0, 1]))
    z0, h0 = LatentSampler(plain).denoise(cond, steps=3, guidance=1.0, generator=g())
    z1, h1 = LatentSampler(fitted).denoise(cond, steps=3, guidance=1.0, generator=g())
    assert torch.equal(z0, z1)                   # same draws; only the point latents change
    target = fitted.denorm_z(z1)[:, D:]
    raw0, raw1 = fitted.denorm_h(h0), fitted.denorm_h(h1)
    ratio = (target / latent_extents(raw0)).clamp(0.5, 2.0)
    assert torch.allclose(latent_extents(raw1), latent_extents(raw0) * ratio, rtol=1e-4)
    centre = lambda x: (x[..., :3].amax(-2) + x[..., :3].amin(-2)) / 2  # noqa: E731
    assert torch.allclose(centre(raw1), centre(raw0), atol=1e-5)   # scaled about the box centre
    assert torch.allclose(raw1[..., 3:], raw0[..., 3:], atol=1e-5)  # features untouched
    # An extent inside the clamp range is met exactly.
    h_fit = fitted.fit_to_extents(fitted.norm_z(torch.cat([torch.zeros(1, D), torch.tensor([[1.0, 0.8, 0.3]])], -1)),
                                  fitted.norm_h(torch.tensor([[[0.0, 0.0, 0.0, 1, 2], [1.2, 1.0, 0.4, 4, 5]]])))
    assert torch.allclose(latent_extents(fitted.denorm_h(h_fit)), torch.tensor([[1.0, 0.8, 0.3]]), atol=1e-5)


def _warm_started(tmp_path, change) -> tuple[PointsModel, Trainer]:
    """A tiny trained model (``ckpt``) and a trainer whose config is ``change``d and whose
    priors start from it (``prior_init``, no steps yet; its folder is ``ckpt2``)."""
    tr = _trainer(tmp_path, vae_iters=3, prior_iters=3)
    tr.train_vae()
    tr.train_prior()
    old = PointsModel.load(tmp_path / "ckpt")
    sets = primitive_sets()
    cfg = tiny_config(sets.categories)
    change(cfg)
    tcfg = TrainConfig(prior_batch=8, encode_repeats=1, val_shapes=4, ckpt_every_s=1e9, prior_iters=0,
                       prior_init=str(tmp_path / "ckpt"))
    tr2 = Trainer(cfg, tcfg, sets, sets, tmp_path / "ckpt2", tmp_path / "state2", log=lambda *_: None)
    tr2.model.vae.load_state_dict(old.vae.state_dict())
    (tmp_path / "state2" / "vae.json").write_text((tmp_path / "state" / "vae.json").read_text())
    tr2.train_prior()
    return old, tr2


def test_prior_init_from_a_smaller_config_zero_pads_and_keeps_the_function(tmp_path):
    old, tr2 = _warm_started(tmp_path, lambda c: setattr(c.global_prior, "extents", True))
    cfg, tcfg, sets = tr2.cfg, tr2.tcfg, tr2.train
    new = PointsModel.load(tmp_path / "ckpt2")
    D = cfg.vae.global_dim
    g = torch.Generator().manual_seed(0)
    h = torch.randn(2, cfg.vae.n_latent_points, 3 + cfg.vae.point_feat_dim, generator=g)
    z = torch.randn(2, D, generator=g)
    zx = torch.cat([z, torch.randn(2, 3, generator=g)], -1)    # any extents: their weights start at zero
    t, cond = torch.tensor([100, 900]), old.cond(torch.tensor([0, 1]))
    with torch.no_grad():
        assert torch.allclose(new.point_prior(h, t, zx, cond), old.point_prior(h, t, z, cond), atol=1e-5)
        assert torch.allclose(new.global_prior(zx, t, cond)[:, :D], old.global_prior(z, t, cond), atol=1e-5)
        assert torch.all(new.global_prior(zx, t, cond)[:, D:] == 0)
    # A config that shrinks a tensor cannot start from it.
    cfg3 = tiny_config(sets.categories)
    cfg3.point_prior.width = 16
    tr3 = Trainer(cfg3, tcfg, sets, sets, tmp_path / "ckpt3", tmp_path / "state3", log=lambda *_: None)
    with pytest.raises(ValueError, match="point_prior"):
        tr3.init_priors_from(tmp_path / "ckpt")


def test_validation_samples_at_the_guidance_the_model_ships_with(tmp_path, monkeypatch):
    from engine.models.points import sampler as sampler_mod
    seen = []
    real_run = sampler_mod.LatentSampler.run

    def spy(self, cond, *a, guidance=None, **kw):
        seen.append(guidance)
        return real_run(self, cond, *a, guidance=guidance, **kw)

    monkeypatch.setattr(sampler_mod.LatentSampler, "run", spy)
    tr = _trainer(tmp_path, val_per_category=2, val_steps=2)
    tr.cfg.diffusion.guidance = 1.25
    tr.val_nna()
    assert seen and set(seen) == {1.25}
    seen.clear()
    tr.tcfg.val_guidance = 2.0          # an explicit training setting still wins
    tr.val_nna()
    assert set(seen) == {2.0}


def test_procedural_cache_is_redrawn_when_the_generator_changed(tmp_path):
    from engine.models.points.data import procedural_category
    first = procedural_category("mug", "train", 2, 64, tmp_path)
    path = tmp_path / "train_mug_2_64.npz"
    assert path.is_file()
    # A cache written by an older generator: its shapes differ from what the generator draws now.
    np.savez(path, points=first[::-1] * 0.5)
    again = procedural_category("mug", "train", 2, 64, tmp_path)
    assert np.array_equal(again, first)
    assert np.array_equal(np.load(path)["points"], first)


def test_prior_latents_are_encoded_again_when_the_training_data_changed(tmp_path):
    tr = _trainer(tmp_path, vae_iters=2)
    tr.train_vae()
    lat = tr._latents()
    assert torch.equal(tr._latents()["h_mu"], lat["h_mu"])          # cached
    sets = tr.train
    tr.train = PointSets(sets.points[::-1].copy(), sets.labels[::-1].copy(), sets.categories)
    again = tr._latents()
    assert torch.equal(again["labels"], torch.from_numpy(sets.labels[::-1].copy()))


def test_shape_code_is_trained_carries_the_layout_and_becomes_the_global_latent(tmp_path):
    """The code stage learns a code of the latent layout (decoding another shape's code is
    clearly worse), the priors then use it as their global latent, warm-started from priors
    trained without it, and sampling, encoding and SDEdit run through it."""
    torch.manual_seed(0)
    tr = _trainer(tmp_path, vae_iters=40, vae_lr=3e-3, lr_warmup=10, prior_iters=3)
    tr.train_vae()
    tr.train_prior()
    sets = primitive_sets()
    cfg = tiny_config(sets.categories)
    cfg.global_prior.shape_code = 8
    cfg.point_prior.layout_attention = True
    tcfg = TrainConfig(prior_batch=8, encode_repeats=2, val_shapes=4, ckpt_every_s=1e9, prior_iters=3,
                       code_iters=300, code_batch=12, code_lr=3e-3, val_every_s=0,
                       prior_init=str(tmp_path / "ckpt"))
    # The second model starts from the first's VAE (as a shipped VAE is reused).
    tr2 = Trainer(cfg, tcfg, sets, sets, tmp_path / "ckpt2", tmp_path / "state2", log=lambda *_: None)
    tr2.model.vae.load_state_dict(tr.model.vae.state_dict())
    tr2.train_code()
    meta = json.loads((tmp_path / "state2" / "code.json").read_text())
    assert meta["step"] == 300 and meta["done"]
    assert meta["val_layout_chamfer"] < 0.5 * meta["val_layout_chamfer_other_code"], meta
    tr2.train_prior()
    new = PointsModel.load(tmp_path / "ckpt2")
    old = PointsModel.load(tmp_path / "ckpt")
    assert new.global_latent_dim == 8 and new.z_mean.shape == (8,)
    # The decoder gets the VAE's mean global latent, whatever the code.
    assert torch.allclose(new.vae_z(torch.zeros(2, 8)), new.z_fixed.expand(2, -1))
    # Warm start: the point prior comes from the old priors but for its global-latent input,
    # which starts at zero; the global prior (a new latent) starts fresh.
    tr3 = Trainer(cfg, tcfg, sets, sets, tmp_path / "ckpt3", tmp_path / "state3", log=lambda *_: None)
    fresh_global = {k: v.clone() for k, v in tr3.model.global_prior.state_dict().items()}
    tr3.init_priors_from(tmp_path / "ckpt")
    pp, opp = tr3.model.point_prior.state_dict(), old.point_prior.state_dict()
    assert all(torch.equal(pp[k], opp[k]) for k in opp if k != "zemb.0.weight")
    assert torch.all(pp["zemb.0.weight"] == 0)
    assert any(k.startswith("cross.") for k in pp)
    assert all(torch.equal(v, fresh_global[k]) for k, v in tr3.model.global_prior.state_dict().items())
    # ... so the warm-started point prior computes what the old one did with a zero global
    # latent, whatever the code and the layout (the cross-attention's gates start at zero).
    g = torch.Generator().manual_seed(0)
    hh = torch.randn(2, cfg.vae.n_latent_points, 3 + cfg.vae.point_feat_dim, generator=g)
    tt, cc = torch.tensor([100, 900]), old.cond(torch.tensor([0, 1]))
    code = torch.randn(2, 8, generator=g)
    with torch.no_grad():
        warm = tr3.model.point_prior(hh, tt, code, cc, tr3.model.prior_layout(code))
        assert torch.allclose(warm, old.point_prior(hh, tt, torch.zeros(2, old.global_latent_dim), cc), atol=1e-5)
        with pytest.raises(ValueError, match="layout"):
            tr3.model.point_prior(hh, tt, code, cc)
    s = LatentSampler(new)
    x = torch.from_numpy(sets.points[:3, :256])
    z, h = s.encode(x, torch.Generator().manual_seed(0))
    assert z.shape == (3, 8)
    post = new.vae.encode(x, torch.Generator().manual_seed(0))
    assert torch.allclose(new.denorm_z(z), new.shape_code(post["h_mu"][..., :3]), atol=1e-5)
    cond = s.condition(torch.tensor([0, 1, 0]))
    out = s.run(cond, n_points=64, steps=3, guidance=1.5, generator=torch.Generator().manual_seed(1))
    assert out.shape == (3, 64, 3) and torch.isfinite(out).all()
    ref = s.run(cond, n_points=64, steps=3, guidance=1.0, z_init=z, h_init=h, strength=0.0,
                generator=torch.Generator().manual_seed(2), clean=False)
    rec = new.vae.decode(new.z_fixed.expand(3, -1), new.denorm_h(h), 64, torch.Generator().manual_seed(2))
    assert torch.allclose(ref, rec, atol=1e-5)
    # The trained point prior uses the layout of the code it is given.
    lay = new.prior_layout(z)
    assert lay.shape == (3, cfg.vae.n_latent_points, 3)
    with torch.no_grad():
        a = new.point_prior(h, torch.tensor([500] * 3), z, cond, lay)
        b = new.point_prior(h, torch.tensor([500] * 3), z, cond, lay.roll(1, 0))
    assert not torch.allclose(a, b)
    # shape_code and extents are two meanings of the same channels; the layout needs a code
    bad = tiny_config(sets.categories)
    bad.global_prior.shape_code, bad.global_prior.extents = 4, True
    with pytest.raises(ValueError, match="exclude each other"):
        PointsModel(bad)
    bad = tiny_config(sets.categories)
    bad.point_prior.layout_attention = True
    with pytest.raises(ValueError, match="needs global_prior.shape_code"):
        PointsModel(bad)


def test_local_geometry_sees_neighbour_offsets_and_warm_starts_unchanged(tmp_path):
    from engine.models.points.point_prior import LocalGeometry
    torch.manual_seed(0)
    lg = LocalGeometry(k=4, hidden=16, width=8)
    xyz = torch.randn(2, 40, 3)
    assert torch.all(lg(xyz) == 0)                         # starts unused
    torch.nn.init.normal_(lg.out.weight)
    out = lg(xyz)
    perm = torch.randperm(40)
    assert torch.allclose(lg(xyz + torch.tensor([0.3, -1.0, 2.0])), out, atol=1e-5)   # translation-invariant
    assert torch.allclose(lg(xyz[:, perm]), out[:, perm], atol=1e-5)                  # permutation-equivariant
    spread = xyz.clone()
    spread[:, 1:] *= 2.0                                   # same first point, other neighbours
    assert not torch.allclose(lg(spread)[:, 0], out[:, 0], atol=1e-3)

    # A prior without the branch starts one with it computing what it did; training moves it.
    def local(c):
        c.point_prior.local_knn, c.point_prior.local_width = 4, 16

    old, tr2 = _warm_started(tmp_path, local)
    cfg = tr2.cfg
    new = PointsModel.load(tmp_path / "ckpt2")
    g = torch.Generator().manual_seed(0)
    h = torch.randn(2, cfg.vae.n_latent_points, 3 + cfg.vae.point_feat_dim, generator=g)
    z = torch.randn(2, cfg.vae.global_dim, generator=g)
    t, cond = torch.tensor([30, 900]), old.cond(torch.tensor([0, 1]))
    with torch.no_grad():
        assert torch.allclose(new.point_prior(h, t, z, cond), old.point_prior(h, t, z, cond), atol=1e-5)
    tr2.tcfg.prior_iters = 4
    tr2.train_prior(resume=True)
    trained = PointsModel.load(tmp_path / "ckpt2")
    assert trained.point_prior.local.out.weight.abs().sum() > 0
    out = LatentSampler(trained).run(trained.cond(torch.tensor([0, 1])), n_points=128, steps=3, guidance=1.0,
                                     generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 128, 3) and torch.isfinite(out).all()


@pytest.mark.parametrize("noise", [0.0, 1.0])
def test_prior_latent_noise_zero_trains_the_priors_on_posterior_means(tmp_path, monkeypatch, noise):
    from engine.models.points import train as train_mod
    seen = []
    real = train_mod._PriorObjective.forward

    def spy(self, z, h, *a):
        seen.append(h.detach().clone())
        return real(self, z, h, *a)

    monkeypatch.setattr(train_mod._PriorObjective, "forward", spy)
    tr = _trainer(tmp_path, vae_iters=3, prior_iters=2, prior_latent_noise=noise)
    tr.train_vae()
    tr.train_prior()
    lat = tr._latents()
    means = tr.model.norm_h(lat["h_mu"]).flatten(1)                   # shapes × (M·P)
    for h in seen:
        # every latent the priors saw is some shape's normalized posterior mean, or none is
        gap = torch.cdist(h.flatten(1), means).min(1).values
        assert bool((gap < 1e-4).all()) == (noise == 0.0), gap


def test_self_conditioning_warm_starts_unchanged_trains_and_feeds_the_last_estimate(tmp_path, monkeypatch):
    # A prior without self-conditioning starts one with it computing what it did, whatever
    # the previous estimate: the estimate's input weights start at zero.
    old, tr2 = _warm_started(tmp_path, lambda c: setattr(c.point_prior, "self_condition", True))
    cfg = tr2.cfg
    new = PointsModel.load(tmp_path / "ckpt2")
    assert new.point_prior.inp[0].in_features == 2 * (3 + cfg.vae.point_feat_dim)
    g = torch.Generator().manual_seed(0)
    h = torch.randn(2, cfg.vae.n_latent_points, 3 + cfg.vae.point_feat_dim, generator=g)
    z = torch.randn(2, cfg.vae.global_dim, generator=g)
    t, cond = torch.tensor([30, 900]), old.cond(torch.tensor([0, 1]))
    with torch.no_grad():
        ref = old.point_prior(h, t, z, cond)
        assert torch.allclose(new.point_prior(h, t, z, cond), ref, atol=1e-5)
        assert (new.point_prior(h, t, z, cond, x0_prev=torch.randn_like(h)) - ref).abs().max() < 1e-6

    # Training sees estimates (non-zero gradient on their weights) and the estimate matters after.
    tr2.tcfg.prior_iters = 4
    tr2.train_prior(resume=True)
    trained = PointsModel.load(tmp_path / "ckpt2")
    sc_w = trained.point_prior.inp[0].weight[:, 3 + cfg.vae.point_feat_dim:]
    assert sc_w.abs().sum() > 0
    with torch.no_grad():
        a = trained.point_prior(h, t, z, cond)
        diff = (trained.point_prior(h, t, z, cond, x0_prev=torch.randn_like(h)) - a).abs().max()
        assert diff > 1e-5          # it was < 1e-6 at the warm start (zero weights)

    # The sampler feeds every step the x0 estimate of the step before (none on the first).
    seen, outs = [], []
    real = trained.point_prior.forward

    def spy(hh, tt, zz, cc, layout=None, x0_prev=None):
        seen.append(None if x0_prev is None else x0_prev.clone())
        out = real(hh, tt, zz, cc, layout, x0_prev)
        outs.append((hh.clone(), tt.clone(), out.clone()))
        return out

    monkeypatch.setattr(trained.point_prior, "forward", spy)
    s = LatentSampler(trained)
    pts = s.run(trained.cond(torch.tensor([0, 1])), n_points=64, steps=4, guidance=1.0,
                generator=torch.Generator().manual_seed(0))
    assert pts.shape == (2, 64, 3) and torch.isfinite(pts).all()
    assert len(seen) == 4 and seen[0] is None and all(x is not None for x in seen[1:])
    from engine.models.points.sampler import sample_scheduler, _x0
    sched = sample_scheduler(trained.cfg.diffusion)
    for k in range(1, 4):
        hh, tt, out = outs[k - 1]
        assert torch.allclose(seen[k], _x0(sched, hh, out, tt), atol=1e-5)
    # Guided sampling and DDIM inversion run with it too.
    seen.clear()
    s.run(trained.cond(torch.tensor([0, 1])), n_points=64, steps=3, guidance=2.0,
          generator=torch.Generator().manual_seed(0))
    assert seen[0] is None and seen[1].shape[0] == 4          # both guidance branches, one estimate
    assert torch.equal(seen[1][:2], seen[1][2:])
    zT, hT = s.ddim_invert(*s.encode(torch.from_numpy(primitive_sets().points[:2, :256])),
                           trained.cond(torch.tensor([0, 1])), steps=3)
    assert torch.isfinite(hT).all() and seen[-1] is not None


def test_latent_order_assignment_recovers_a_shuffled_template_and_fits_a_barycenter():
    from engine.models.points.latent_order import apply_permutation, assign_to_template, fit_template, slot_permutation
    rng = np.random.default_rng(0)
    template = rng.normal(size=(40, 3)).astype(np.float32)
    shuffled = rng.permutation(40)
    perm = assign_to_template(template[shuffled], template)
    assert np.array_equal(template[shuffled][perm], template)
    # Jittered, shuffled copies of one set: the fitted template is that set, up to the jitter.
    sets = np.stack([(template + 0.01 * rng.normal(size=template.shape))[rng.permutation(40)] for _ in range(30)])
    fitted = fit_template(sets.astype(np.float32))
    err = np.linalg.norm(fitted[assign_to_template(fitted, template)] - template, axis=-1)
    assert err.max() < 0.02, err.max()
    # Batched torch form: ordered sets come back in template order and carry their other channels along.
    h = torch.from_numpy(np.concatenate([sets, np.arange(40, dtype=np.float32)[None, :, None].repeat(30, 0)], -1))
    p = slot_permutation(h[..., :3], torch.from_numpy(fitted))
    ordered = apply_permutation(h, p)
    assert torch.equal(slot_permutation(ordered[..., :3], torch.from_numpy(fitted)), torch.arange(40).expand(30, -1))
    assert torch.equal(ordered[..., 3].long(), torch.gather(h[..., 3].long(), 1, p))


def test_slot_order_warm_starts_unchanged_trains_on_ordered_latents_and_encodes_in_order(tmp_path):
    old, tr2 = _warm_started(tmp_path, lambda c: setattr(c.point_prior, "slot_order", True))
    cfg = tr2.cfg
    new = PointsModel.load(tmp_path / "ckpt2")
    assert new.slot_template.abs().sum() > 0                          # fitted and saved with the model
    g = torch.Generator().manual_seed(0)
    M, P = cfg.vae.n_latent_points, 3 + cfg.vae.point_feat_dim
    h, z = torch.randn(2, M, P, generator=g), torch.randn(2, cfg.vae.global_dim, generator=g)
    t, cond = torch.tensor([30, 900]), old.cond(torch.tensor([0, 1]))
    with torch.no_grad():
        assert torch.allclose(new.point_prior(h, t, z, cond), old.point_prior(h, t, z, cond), atol=1e-5)
        with pytest.raises(ValueError, match="latent points"):
            new.point_prior(h[:, :-1], t, z, cond)

    # The priors train on latents in template order, and the slot embeddings learn.
    lat = tr2._in_slot_order(tr2._latents())
    tmpl = tr2.model.slot_template
    from engine.models.points.latent_order import slot_permutation
    assert torch.equal(slot_permutation(lat["h_mu"][..., :3], tmpl), torch.arange(M).expand(len(lat["h_mu"]), -1))
    raw = tr2._latents()
    assert not torch.equal(raw["h_mu"], lat["h_mu"])
    assert torch.allclose(raw["h_mu"].sort(1).values, lat["h_mu"].sort(1).values)   # the same points
    tr2.tcfg.prior_iters = 4
    tr2.train_prior(resume=True)
    trained = PointsModel.load(tmp_path / "ckpt2")
    assert trained.point_prior.slot_embed.abs().sum() > 0
    assert torch.equal(trained.slot_template, new.slot_template)      # the same latents, the same template

    # Encoding for refine and interpolation gives latents in slot order; sampling runs.
    s = LatentSampler(trained)
    x = torch.from_numpy(primitive_sets().points[:2, :256])
    zn, hn = s.encode(x, torch.Generator().manual_seed(3))
    assert torch.equal(slot_permutation(trained.denorm_h(hn)[..., :3], trained.slot_template), torch.arange(M).expand(2, -1))
    out = s.run(trained.cond(torch.tensor([0, 1])), n_points=64, steps=3, guidance=1.0, z_init=zn, h_init=hn,
                strength=0.5, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 64, 3) and torch.isfinite(out).all()

    # A slot-ordered model whose template was never fitted says so instead of ordering by zeros.
    fresh = PointsModel(cfg)
    with pytest.raises(ValueError, match="slot template was never fitted"):
        LatentSampler(fresh).encode(x)


def test_slot_order_reaches_the_decoder_sdedit_and_joint_stages(tmp_path, monkeypatch):
    from engine.models.points import sampler as sampler_mod
    from engine.models.points import train as train_mod
    from engine.models.points.latent_order import slot_permutation
    sets = primitive_sets()
    cfg = tiny_config(sets.categories)
    cfg.point_prior.slot_order = True
    tcfg = TrainConfig(vae_batch=4, n_enc_points=256, n_rec_points=256, prior_batch=8, encode_repeats=1,
                       val_shapes=4, ckpt_every_s=1e9, vae_iters=3, prior_iters=2, decoder_iters=1, decoder_batch=4,
                       decoder_emd_points=64, val_every_s=0, decoder_sdedit=0.3, decoder_sdedit_frac=0.5,
                       decoder_sdedit_steps=2, joint_iters=1, joint_batch=4)
    tr = Trainer(cfg, tcfg, sets, sets, tmp_path / "ckpt", tmp_path / "state", log=lambda *_: None)
    tr.train_vae()
    tr.train_prior()
    m, seen = tr.model, []
    identity = torch.arange(cfg.vae.n_latent_points)

    def in_order(h_n):
        return torch.equal(slot_permutation(m.denorm_h(h_n)[..., :3], m.slot_template), identity.expand(len(h_n), -1))

    real_denoise = sampler_mod.LatentSampler.denoise

    def spy_denoise(self, cond, **kw):
        seen.append(("decoder", in_order(kw["h_init"])))
        return real_denoise(self, cond, **kw)

    real_prior = train_mod._PriorObjective.forward

    def spy_prior(self, z, h, *a):
        seen.append(("joint", in_order(h.detach())))
        return real_prior(self, z, h, *a)

    monkeypatch.setattr(sampler_mod.LatentSampler, "denoise", spy_denoise)
    monkeypatch.setattr(train_mod._PriorObjective, "forward", spy_prior)
    tr.train_decoder()
    tr.train_joint()
    assert [s for s, _ in seen] == ["decoder", "joint"] and all(ok for _, ok in seen), seen


def test_low_noise_expert_denoises_below_expert_t_and_trains_alone(tmp_path, monkeypatch):
    tr = _trainer(tmp_path, vae_iters=3, prior_iters=3, expert_iters=4, expert_lr=1e-2)
    tr.cfg.point_prior.expert_t = 300
    tr.model = PointsModel(tr.cfg)
    tr.train_vae()
    tr.train_prior()
    m = tr.model
    assert m.point_prior_at(299) is m.point_prior_low and m.point_prior_at(300) is m.point_prior
    # until the expert stage runs, the saved expert is the trained point prior itself
    saved = PointsModel.load(tmp_path / "ckpt")
    assert torch.equal(saved.point_prior_low.out.weight, saved.point_prior.out.weight)
    frozen = {k: v.clone() for k, v in m.state_dict().items() if not k.startswith("point_prior_low.")}

    # the expert starts from the trained point prior and sees only timesteps below expert_t
    seen_t = []
    forward = type(m.point_prior).forward

    def spy(self, h, t, *a, **kw):
        if self is m.point_prior_low:
            seen_t.append(t.clone())
        return forward(self, h, t, *a, **kw)

    monkeypatch.setattr(type(m.point_prior), "forward", spy)
    started = {}
    load = m.point_prior_low.load_state_dict

    def record(sd, *a, **kw):
        started.update({k: v.clone() for k, v in sd.items()})
        return load(sd, *a, **kw)

    monkeypatch.setattr(m.point_prior_low, "load_state_dict", record)
    tr.train_prior(expert=True)
    assert torch.equal(started["out.weight"], m.point_prior.out.weight)
    assert seen_t and int(torch.cat(seen_t).max()) < 300
    after = m.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in frozen.items()), "the expert stage changed a frozen tensor"
    assert not torch.equal(after["point_prior_low.out.weight"], after["point_prior.out.weight"])
    assert json.loads((tmp_path / "state" / "expert.json").read_text())["step"] == 4

    # sampling calls the expert exactly at the timesteps below expert_t
    seen_t.clear()
    s = LatentSampler(PointsModel.load(tmp_path / "ckpt"))
    monkeypatch.setattr(type(m.point_prior), "forward", spy)
    calls = []
    at = s.model.point_prior_at
    monkeypatch.setattr(s.model, "point_prior_at", lambda t: calls.append(int(t)) or at(t))
    s.run(s.condition(torch.tensor([0])), n_points=64, steps=5, guidance=1.0)
    assert calls and all((t < 300) == (at(t) is s.model.point_prior_low) for t in calls)
    assert any(t < 300 for t in calls) and any(t >= 300 for t in calls)

    # resuming continues the expert's own state
    tr2 = _trainer(tmp_path, vae_iters=3, prior_iters=3, expert_iters=6)
    tr2.cfg.point_prior.expert_t = 300
    tr2.model = PointsModel(tr2.cfg)
    tr2.load_model_if_any()
    tr2.train_prior(resume=True, expert=True)
    assert json.loads((tmp_path / "state" / "expert.json").read_text())["step"] == 6


def test_expert_config_is_checked():
    cfg = tiny_config(["a"])
    cfg.point_prior.expert_t = 1000
    with pytest.raises(ValueError, match="expert_t"):
        PointsModel(cfg)
    tr_cfg = tiny_config(["a"])
    tr_cfg.weights_dtype = "int8"
    with pytest.raises(ValueError, match="weights_dtype"):
        PointsModel(tr_cfg)


def test_float16_weights_halve_the_file_and_load_as_float32(tmp_path):
    from safetensors.torch import load_file

    cfg = tiny_config(["a", "b"])
    model = PointsModel(cfg).eval()
    with torch.no_grad():
        model.h_std.fill_(0.0312345)
    model.save(tmp_path / "f32")
    cfg16 = tiny_config(["a", "b"])
    cfg16.weights_dtype = "float16"
    model.cfg = cfg16
    model.save(tmp_path / "f16")
    size = lambda d: (d / "model.safetensors").stat().st_size   # noqa: E731
    assert size(tmp_path / "f16") < 0.6 * size(tmp_path / "f32")
    raw = load_file(str(tmp_path / "f16" / "model.safetensors"))
    assert raw["point_prior.out.weight"].dtype == torch.float16
    assert raw["h_std"].dtype == torch.float32            # statistics stay exact
    again = PointsModel.load(tmp_path / "f16")
    assert again.point_prior.out.weight.dtype == torch.float32
    assert torch.equal(again.point_prior.out.weight, model.point_prior.out.weight.half().float())
    assert torch.equal(again.h_std, model.h_std)
    x = torch.rand(1, 256, 3) * 2 - 1
    s1, s2 = LatentSampler(model), LatentSampler(again)
    z1, h1 = s1.encode(x, torch.Generator().manual_seed(0))
    z2, h2 = s2.encode(x, torch.Generator().manual_seed(0))
    # float16 weights move the encoding by far less than the latents' spread
    assert (h1 - h2).abs().max() < 0.01 * h1.std()
