"""SSIM in OpenFWI's convention (pytorch_ssim) against an independent, literal implementation."""

import math

import numpy as np
import pytest

from ubdiff_onnx.evaluation.fidelity import ssim_openfwi, velocity_ssim, velocity_ssim_openfwi


def literal_pytorch_ssim(a: np.ndarray, b: np.ndarray, size: int = 11, sigma: float = 1.5) -> float:
    """pytorch_ssim written out position by position: a 2-D Gaussian window (outer product of the
    normalised 1-D taps exp(-(x - size//2)² / 2σ²)), zero padding of size//2, population moments,
    C1 = 0.01², C2 = 0.03², mean of the SSIM map."""
    g = np.array([math.exp(-((x - size // 2) ** 2) / (2 * sigma**2)) for x in range(size)])
    g /= g.sum()
    w = np.outer(g, g)
    p = size // 2
    A, B = np.pad(a, p), np.pad(b, p)
    h, wd = a.shape
    total = 0.0
    for i in range(h):
        for j in range(wd):
            pa, pb = A[i : i + size, j : j + size], B[i : i + size, j : j + size]
            mu_a, mu_b = (w * pa).sum(), (w * pb).sum()
            va = (w * pa * pa).sum() - mu_a**2
            vb = (w * pb * pb).sum() - mu_b**2
            cov = (w * pa * pb).sum() - mu_a * mu_b
            total += ((2 * mu_a * mu_b + 1e-4) * (2 * cov + 9e-4)) / ((mu_a**2 + mu_b**2 + 1e-4) * (va + vb + 9e-4))
    return total / (h * wd)


def test_random_maps_match_the_literal_formula():
    rng = np.random.default_rng(0)
    for _ in range(3):
        a, b = rng.random((70, 70)), rng.random((70, 70))
        assert abs(float(ssim_openfwi(a, b)) - literal_pytorch_ssim(a, b)) <= 1e-6


def test_real_maps_match_the_literal_formula_and_the_torch_metric(small_dataset):
    import torch

    from ubdiff_onnx.data.openfwi import open_folder
    from ubdiff_onnx.training.metrics import ssim as torch_ssim

    folder = open_folder(small_dataset)
    v = np.stack([folder.velocity(i) for i in range(4)]).astype(np.float64)  # m/s
    a, b = v[:2], v[2:]
    ours = velocity_ssim_openfwi(a, b)
    for k in range(2):
        lit = literal_pytorch_ssim((a[k, 0] - 1500) / 3000, (b[k, 0] - 1500) / 3000)
        assert abs(ours[k] - lit) <= 1e-6
    # the training metric (torch, float32) is the same formula; one mean over the batch
    t = torch_ssim(torch.from_numpy((a - 1500) / 3000).float(), torch.from_numpy((b - 1500) / 3000).float()).item()
    assert abs(t - ours.mean()) <= 1e-4


def test_identical_maps_and_the_two_conventions():
    rng = np.random.default_rng(1)
    v = 1500 + 3000 * rng.random((2, 1, 70, 70))
    assert np.allclose(velocity_ssim_openfwi(v, v), 1.0)
    w = np.clip(v + rng.normal(0, 300, v.shape), 1500, 4500)
    # zero padding lowers the borders' statistics: the two conventions differ, and both are reported
    assert not np.allclose(velocity_ssim_openfwi(v, w), velocity_ssim(v, w), atol=1e-3)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shapes differ"):
        ssim_openfwi(np.zeros((70, 70)), np.zeros((70, 69)))
