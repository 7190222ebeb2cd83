"""The metrics on known cases: SSIM against an independent 2-D implementation, the Fréchet distance
against its analytic values, physics consistency of real pairs."""

import numpy as np
import pytest

from ubdiff_onnx.evaluation.distribution import (
    GaussianStats,
    frechet_distance,
    frechet_from_features,
    gaussian_stats,
    sqrtm_psd,
    velocity_statistics,
    wasserstein_1d,
)
from ubdiff_onnx.evaluation.fidelity import (
    compare_samples,
    correlation,
    gaussian_window,
    mae,
    rel_l2,
    ssim,
    summarize,
    velocity_ssim,
)


def _maps(n=3, seed=0):
    """Smooth layered-looking velocity maps in m/s."""
    rng = np.random.default_rng(seed)
    z = np.linspace(0, 1, 70)[:, None]
    x = np.linspace(0, 1, 70)[None, :]
    out = []
    for _ in range(n):
        a, b, c = rng.uniform(0.5, 1.5, 3)
        v = 1700 + 2500 * z * a + 200 * np.sin(6 * x * b + 3 * z * c) + 30 * rng.standard_normal((70, 70))
        out.append(v)
    return np.asarray(out, dtype=np.float32)[:, None]


# -- SSIM ---------------------------------------------------------------------------------------


def test_ssim_of_identical_maps_is_one():
    v = _maps()
    s = velocity_ssim(v, v)
    assert s.shape == (3,)
    np.testing.assert_allclose(s, 1.0, atol=1e-12)
    assert float(ssim(v[0, 0], v[0, 0])) == pytest.approx(1.0, abs=1e-12)


def test_ssim_matches_an_independent_2d_implementation():
    signal = pytest.importorskip("scipy.signal")
    v = _maps(2, seed=1)
    a, b = v[0, 0].astype(np.float64), v[1, 0].astype(np.float64)
    g = gaussian_window()
    w = np.outer(g, g)
    f = lambda x: signal.convolve2d(x, w[::-1, ::-1], mode="valid")  # noqa: E731
    c1, c2 = (0.01 * 3000.0) ** 2, (0.03 * 3000.0) ** 2
    mu_a, mu_b = f(a), f(b)
    va, vb, cov = f(a * a) - mu_a**2, f(b * b) - mu_b**2, f(a * b) - mu_a * mu_b
    want = np.mean((2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a**2 + mu_b**2 + c1) * (va + vb + c2)))
    assert mu_a.shape == (60, 60)
    assert float(ssim(a, b, 3000.0)) == pytest.approx(want, rel=1e-10)
    # velocity_ssim: the same on maps scaled to [0, 1] by 1500–4500 m/s (SSIM is scale-, not shift-invariant)
    scaled = float(ssim((a - 1500) / 3000, (b - 1500) / 3000, 1.0))
    assert velocity_ssim(v[:1], v[1:])[0] == pytest.approx(scaled, rel=1e-10)


def test_ssim_behaves():
    v = _maps(1)
    rng = np.random.default_rng(3)
    small = v + rng.normal(0, 20, v.shape)
    large = v + rng.normal(0, 300, v.shape)
    s_small, s_large = velocity_ssim(v, small)[0], velocity_ssim(v, large)[0]
    assert 1.0 > s_small > s_large > 0.0
    # symmetric; a narrower range (larger values after scaling) is stricter
    assert velocity_ssim(small, v)[0] == pytest.approx(s_small, abs=1e-12)
    assert velocity_ssim(v, large, 1500.0, 2500.0)[0] < s_large


def test_pointwise_metrics():
    v = _maps(2)
    assert np.all(mae(v, v) == 0)
    np.testing.assert_allclose(mae(v, v + 25.0), 25.0, rtol=1e-6)
    s = np.random.default_rng(0).standard_normal((2, 5, 100, 7))
    np.testing.assert_allclose(rel_l2(s, s), 0.0)
    np.testing.assert_allclose(rel_l2(1.1 * s, s), 0.1, rtol=1e-9)
    np.testing.assert_allclose(correlation(s, 2 * s + 1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(correlation(s, -s), -1.0, rtol=1e-12)
    assert np.isnan(correlation(s, np.zeros_like(s))).all()
    out = compare_samples(v, s, v, s)
    assert set(out) == {"velocity_mae", "velocity_ssim", "seismic_rel_l2", "seismic_corr", "seismic_rel_l2_log"}
    summary = summarize([1.0, 3.0, np.nan])
    assert summary["mean"] == 2.0 and summary["nan"] == 1 and summary["per_sample"] == [1.0, 3.0, None]


# -- Fréchet distance ----------------------------------------------------------------------------


def _random_cov(d, rng):
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_frechet_of_identical_distributions_is_zero():
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((200, 16))
    assert frechet_from_features(feats, feats) == pytest.approx(0.0, abs=1e-9)
    st = GaussianStats(rng.standard_normal(16), _random_cov(16, rng), 100)
    assert frechet_distance(st, st) == pytest.approx(0.0, abs=1e-9)


def test_frechet_of_shifted_gaussians_is_analytic():
    rng = np.random.default_rng(1)
    d = 8
    cov = _random_cov(d, rng)
    mu = rng.standard_normal(d)
    delta = rng.standard_normal(d)
    assert frechet_distance(GaussianStats(mu, cov, 1), GaussianStats(mu + delta, cov, 1)) == pytest.approx(float(delta @ delta), rel=1e-9)
    # different (commuting) covariances: ‖Δμ‖² + Σ(σ₁ − σ₂)²
    s1, s2 = rng.uniform(0.2, 2.0, d), rng.uniform(0.2, 2.0, d)
    want = float(delta @ delta + np.sum((s1 - s2) ** 2))
    got = frechet_distance(GaussianStats(mu, np.diag(s1**2), 1), GaussianStats(mu + delta, np.diag(s2**2), 1))
    assert got == pytest.approx(want, rel=1e-9)
    # from samples: N(0, I) vs N(δ, I) → ‖δ‖² (plus a small-sample bias)
    a = rng.standard_normal((20000, 4))
    b = rng.standard_normal((20000, 4)) + np.array([1.0, 0.0, -0.5, 0.0])
    assert frechet_from_features(a, b) == pytest.approx(1.25, abs=0.02)


def test_frechet_matches_scipy_sqrtm_for_non_commuting_covariances():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(2)
    d = 12
    s1, s2 = _random_cov(d, rng), _random_cov(d, rng)
    m1, m2 = rng.standard_normal(d), rng.standard_normal(d)
    covmean = linalg.sqrtm(s1 @ s2).real
    want = float(np.sum((m1 - m2) ** 2) + np.trace(s1 + s2 - 2 * covmean))
    got = frechet_distance(GaussianStats(m1, s1, 1), GaussianStats(m2, s2, 1))
    assert got == pytest.approx(want, rel=1e-8)
    assert frechet_distance(GaussianStats(m2, s2, 1), GaussianStats(m1, s1, 1)) == pytest.approx(got, rel=1e-8)
    r = sqrtm_psd(s1)
    np.testing.assert_allclose(r @ r, s1, atol=1e-10)


def test_frechet_is_finite_with_fewer_samples_than_dimensions():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((5, 32)), rng.standard_normal((5, 32))
    d = frechet_from_features(a, b)
    assert np.isfinite(d) and d > 0
    with pytest.raises(ValueError):
        gaussian_stats(a[:1])


def test_velocity_statistics_and_w1():
    v = _maps(4)
    st = velocity_statistics(v)
    assert st["min"] <= st["p1"] <= st["p50"] <= st["p99"] <= st["max"]
    assert sum(st["histogram"]["counts"]) == v.size
    assert 0.0 <= st["outside_label_range"] <= 1.0
    assert velocity_statistics(np.full((1, 70, 70), 5000.0))["outside_label_range"] == 1.0
    assert wasserstein_1d(v, v) == pytest.approx(0.0, abs=1e-9)
    assert wasserstein_1d(v, v + 100.0) == pytest.approx(100.0, rel=1e-6)


# -- encoder and physics (torch, deepwave) -------------------------------------------------------


def test_encoder_matches_the_model_and_needs_encoder_weights(tiny_checkpoint, tmp_path):
    import torch

    from ubdiff_onnx.checkpoints.format import build_model, load_checkpoint, save_checkpoint
    from ubdiff_onnx.errors import UserError
    from ubdiff_onnx.evaluation.distribution import LatentEncoder
    from ubdiff_onnx.runtime.normalization import OPENFWI, normalize_velocity

    v = _maps(3)
    norm = OPENFWI["curvefault-a"]
    enc = LatentEncoder(tiny_checkpoint)
    z = enc.encode(v, norm, batch_size=2)
    model = build_model(load_checkpoint(tiny_checkpoint))
    with torch.no_grad():
        want = model.encode(torch.from_numpy(normalize_velocity(v, norm))).numpy()
    assert z.shape == (3, enc.latent_dim)
    np.testing.assert_allclose(z, want, atol=1e-5)

    ckpt = load_checkpoint(tiny_checkpoint)
    ckpt.state_dict = {k: t for k, t in ckpt.state_dict.items() if not k.startswith("encoder.")}
    save_checkpoint(ckpt, tmp_path / "noenc.pt")
    with pytest.raises(UserError, match="no encoder weights"):
        LatentEncoder(tmp_path / "noenc.pt")


def test_physics_of_real_pairs_is_near_perfect(small_dataset):
    from ubdiff_onnx.data.openfwi import open_folder
    from ubdiff_onnx.evaluation.physics import physics_errors

    folder = open_folder(small_dataset)
    vel = np.stack([folder.velocity(i) for i in range(3)])
    seis = np.stack([folder.seismic(i) for i in range(3)])
    errs, sim = physics_errors(vel, seis)
    assert sim.shape == seis.shape
    assert np.all(errs["rel_l2"] < 1e-3), errs
    assert np.all(errs["rel_l2_log"] < 1e-3), errs
    assert np.all(errs["corr"] > 0.9999), errs
    # the metric notices a wrong pairing: sample 0's seismic against sample 1's velocity
    wrong, _ = physics_errors(vel[:2], seis[[1, 0]], simulated=sim[:2])
    assert np.all(wrong["rel_l2"] > 0.05)
