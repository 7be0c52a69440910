"""Point-cloud metrics: CD, EMD, MMD, COV, 1-NNA (definitions of PointFlow / LION)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from engine.errors import LatentforgeError
from engine.eval.errors import BadPointSet
from engine.eval.metrics import (chamfer_distance, compute_all_metrics, emd, mmd_cov,
                                 normalize_points, one_nn_accuracy, pairwise_chamfer,
                                 pairwise_emd, subsample)


def _ellipsoids(n_shapes: int, n_pts: int, rng: np.random.Generator) -> np.ndarray:
    """Points on ellipsoid surfaces with random semi-axes in [0.4, 1]: a continuous family."""
    axes = rng.uniform(0.4, 1.0, size=(n_shapes, 1, 3))
    d = rng.normal(size=(n_shapes, n_pts, 3))
    return d / np.linalg.norm(d, axis=2, keepdims=True) * axes


def _boxes(n_shapes: int, n_pts: int, rng: np.random.Generator) -> np.ndarray:
    """Points on the surfaces of random boxes (half sides in [0.4, 1])."""
    half = rng.uniform(0.4, 1.0, size=(n_shapes, 1, 3))
    p = rng.uniform(-1, 1, size=(n_shapes, n_pts, 3))
    axis = rng.integers(0, 3, size=(n_shapes, n_pts, 1))
    np.put_along_axis(p, axis, rng.choice([-1.0, 1.0], size=(n_shapes, n_pts, 1)), axis=2)
    return p * half


def _brute_cd(a: np.ndarray, b: np.ndarray) -> float:
    d = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return d.min(1).mean() + d.min(0).mean()


def test_chamfer_matches_brute_force_and_known_values():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 100, 3)), rng.normal(size=(4, 80, 3))
    cd = chamfer_distance(a, b)
    assert cd.shape == (4,)
    for i in range(4):
        assert cd[i].item() == pytest.approx(_brute_cd(a[i], b[i]), rel=1e-4)
    # One point each, distance 0.5 apart: each direction contributes 0.25 (squared L2).
    assert chamfer_distance(np.zeros((1, 3)), np.array([[0.5, 0, 0]])).item() == pytest.approx(0.5)
    assert chamfer_distance(a[0], a[0]).item() == pytest.approx(0.0, abs=1e-6)


def test_emd_exact_on_translation_and_permutation():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(64, 3))
    shift = np.array([0.3, -0.4, 0.0])   # |shift| = 0.5
    # Mean matched distance >= |mean displacement| (convexity), reached by the identity.
    assert emd(a, a + shift).item() == pytest.approx(0.5, rel=1e-5)
    assert emd(a, a[rng.permutation(64)]).item() == pytest.approx(0.0, abs=1e-7)
    # Against an exhaustive search over all matchings of 6 points.
    x, y = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
    best = min(np.linalg.norm(x - y[list(p)], axis=1).mean() for p in itertools.permutations(range(6)))
    assert emd(x, y).item() == pytest.approx(best, rel=1e-5)
    with pytest.raises(BadPointSet):
        emd(x, y[:5])


def test_pairwise_backends_agree_and_are_symmetric():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(5, 200, 3)), rng.normal(size=(3, 150, 3))
    kd = pairwise_chamfer(x, y, backend="kdtree")
    dense = pairwise_chamfer(x, y, backend="torch")
    assert kd.shape == (5, 3)
    assert torch.allclose(kd, dense, rtol=1e-4, atol=1e-6)
    assert kd[2, 1].item() == pytest.approx(_brute_cd(x[2], y[1]), rel=1e-4)
    for backend in ("kdtree", "torch"):
        self_d = pairwise_chamfer(x, backend=backend)
        assert torch.allclose(self_d, self_d.T) and torch.all(self_d.diagonal() == 0)
        assert torch.allclose(self_d, pairwise_chamfer(x, x, backend="kdtree"), rtol=1e-4, atol=1e-6)
    xs = torch.as_tensor(x[:, :40], dtype=torch.float32)
    e = pairwise_emd(xs)
    assert torch.allclose(e, e.T) and torch.all(e.diagonal() == 0)
    assert e[0, 3].item() == pytest.approx(emd(xs[0], xs[3]).item(), rel=1e-5)


def test_mmd_cov_and_1nna_on_hand_made_matrices():
    # 3 generated × 4 reference: generated 0 and 1 both match reference 0, generated 2
    # matches reference 2; references 1 and 3 are not covered.
    d = torch.tensor([[0.1, 0.9, 0.8, 0.7],
                      [0.2, 0.5, 0.9, 0.9],
                      [0.9, 0.6, 0.3, 0.4]])
    mmd, cov = mmd_cov(d)
    assert cov == pytest.approx(2 / 4)
    assert mmd == pytest.approx(np.mean([0.1, 0.5, 0.3, 0.4]))
    # Two well separated clusters -> every shape's nearest neighbour is in its own set.
    d_ss = torch.tensor([[0.0, 0.1], [0.1, 0.0]])
    d_rr = torch.tensor([[0.0, 0.2], [0.2, 0.0]])
    d_sr = torch.full((2, 2), 5.0)
    assert one_nn_accuracy(d_ss, d_sr, d_rr) == 1.0
    # Each generated shape sits on a reference shape -> every neighbour is in the other set.
    d_sr = torch.tensor([[0.0, 3.0], [3.0, 0.0]])
    d_ss = d_rr = torch.tensor([[0.0, 3.0], [3.0, 0.0]])
    assert one_nn_accuracy(d_ss, d_sr, d_rr) == 0.0


def test_set_against_itself_gives_full_coverage_and_zero_mmd():
    pts = _ellipsoids(12, 256, np.random.default_rng(3))
    r = compute_all_metrics(pts, pts.copy(), emd_points=64)
    assert r["cov_cd"] == 1.0 and r["cov_emd"] == 1.0
    assert r["mmd_cd"] == pytest.approx(0.0, abs=1e-7)
    assert r["mmd_emd"] == pytest.approx(0.0, abs=1e-7)
    # Each shape's nearest neighbour is its twin in the other set.
    assert r["1nna_cd"] == 0.0 and r["1nna_emd"] == 0.0
    assert r["n_generated"] == 12 and r["n_reference"] == 12


def test_1nna_limits_on_analytic_distributions():
    rng = np.random.default_rng(4)
    a, b = _ellipsoids(32, 256, rng), _ellipsoids(32, 256, rng)
    same = compute_all_metrics(a, b, emd_points=96)
    # Two independent samples of one distribution: indistinguishable, 1-NNA ≈ 0.5.
    assert abs(same["1nna_cd"] - 0.5) < 0.15, same
    assert abs(same["1nna_emd"] - 0.5) < 0.15, same
    assert 0.3 < same["cov_cd"] < 1.0
    other = compute_all_metrics(a, _boxes(32, 256, rng), emd_points=96)
    # Disjoint distributions: perfectly separable, 1-NNA ≈ 1.
    assert other["1nna_cd"] >= 0.95 and other["1nna_emd"] >= 0.95, other
    assert other["mmd_cd"] > same["mmd_cd"] and other["mmd_emd"] > same["mmd_emd"]


def test_1nna_limits_on_procedural_splits():
    from engine.data.procedural import generate_shape, split_seeds
    from engine.geometry.sampling import sample_surface

    def points(category: str, split: str, n: int) -> np.ndarray:
        out = []
        for seed in split_seeds(split, n):
            mesh = generate_shape(category, seed).mesh
            out.append(sample_surface(mesh.vertices, mesh.faces, 512, seed=seed)[0])
        return np.stack(out)

    chairs_val, chairs_test = points("chair", "val", 24), points("chair", "test", 24)
    same = compute_all_metrics(chairs_val, chairs_test, emd_points=128)
    # Val and test seeds of one category: one distribution. At 24 vs 24 shapes the
    # measured floor is ~0.3 (near-duplicate shapes across splits), hence the wide band.
    assert 0.25 <= same["1nna_cd"] <= 0.75, same
    assert 0.25 <= same["1nna_emd"] <= 0.75, same
    different = compute_all_metrics(chairs_test, points("table", "test", 24), emd_points=128)
    assert different["1nna_cd"] >= 0.9 and different["1nna_emd"] >= 0.9, different


def test_box_normalization_makes_metrics_scale_and_offset_invariant():
    rng = np.random.default_rng(5)
    a, b = _ellipsoids(10, 128, rng), _boxes(10, 128, rng)
    base = compute_all_metrics(a, b, emd_points=64)
    moved = compute_all_metrics(a * 7.0 + np.array([3.0, -2.0, 1.0]), b * 0.01, emd_points=64)
    for k in ("1nna_cd", "1nna_emd", "cov_cd", "cov_emd"):
        assert moved[k] == base[k]
    assert moved["mmd_cd"] == pytest.approx(base["mmd_cd"], rel=1e-3)
    assert moved["mmd_emd"] == pytest.approx(base["mmd_emd"], rel=1e-3)
    n = normalize_points(a * 5 + 2)
    extent = n.amax(1) - n.amin(1)
    assert torch.allclose(extent.amax(1), torch.ones(10))
    assert torch.allclose((n.amax(1) + n.amin(1)) / 2, torch.zeros(10, 3), atol=1e-6)
    raw = compute_all_metrics(a, b * 3.0, emd_points=64, normalize="none")
    assert raw["mmd_cd"] != pytest.approx(base["mmd_cd"], rel=1e-2)


def test_emd_subsample_is_fixed_per_shape_and_cd_only_mode():
    pts = torch.rand(3, 100, 3)
    s1, s2 = subsample(pts, 20, seed=7), subsample(pts, 20, seed=7)
    assert s1.shape == (3, 20, 3) and torch.equal(s1, s2)
    assert subsample(pts, 200).shape == (3, 100, 3)
    r = compute_all_metrics(pts, torch.rand(4, 100, 3), use_emd=False)
    assert r["1nna_emd"] is None and r["mmd_emd"] is None and r["emd_points"] is None
    assert 0.0 <= r["1nna_cd"] <= 1.0 and r["n_reference"] == 4


@pytest.mark.parametrize("bad", [
    np.full((2, 10, 3), np.nan),
    np.zeros((2, 10, 2)),
    np.zeros((0, 10, 3)),
])
def test_bad_point_sets_raise_typed_errors(bad):
    with pytest.raises(BadPointSet) as info:
        compute_all_metrics(bad, np.zeros((2, 10, 3)))
    assert isinstance(info.value, LatentforgeError) and info.value.code == "eval.bad_points"
    assert info.value.advice


def test_mismatched_point_counts_raise():
    with pytest.raises(BadPointSet):
        compute_all_metrics(np.random.rand(2, 10, 3), np.random.rand(2, 12, 3))


def test_psnr_and_ssim_known_values():
    from engine.eval.image_metrics import ImageMismatch, psnr, ssim

    a = np.zeros((16, 16, 3), dtype=np.uint8)
    b = np.full((16, 16, 3), 10, dtype=np.uint8)
    # MSE 100 on the 0-255 scale.
    assert psnr(b, a) == pytest.approx(10 * np.log10(255 ** 2 / 100))
    assert psnr(a.astype(np.float32), (b / 255.0).astype(np.float32)) == pytest.approx(psnr(b, a), rel=1e-4)
    assert psnr(a, a) == float("inf")
    rng = np.random.default_rng(0)
    img = rng.random((2, 32, 32, 3))
    noisy = np.clip(img + rng.normal(0, 0.1, img.shape), 0, 1)
    s = ssim(noisy, img)
    assert s.shape == (2,) and np.all(s < 0.99) and np.all(s > 0.0)
    assert ssim(img[0], img[0]) == pytest.approx(1.0)
    assert ssim(img[0, :, :, 0], img[0, :, :, 0]) == pytest.approx(1.0)   # grey H×W
    assert ssim(noisy[0], img[0]) > ssim(np.clip(img[0] + rng.normal(0, 0.3, img[0].shape), 0, 1), img[0])
    with pytest.raises(ImageMismatch):
        psnr(img[0], img[0, :16])
    with pytest.raises(ImageMismatch):
        ssim(img[0, :5, :5], img[0, :5, :5])


def test_pairwise_emd_in_worker_processes_matches_serial():
    x = torch.rand(4, 32, 3)
    # Symmetric case: rows of different lengths (upper triangle) come back in place.
    assert torch.equal(pairwise_emd(x, workers=2), pairwise_emd(x))
