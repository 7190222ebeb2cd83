"""Fidelity: how far one bundle's samples are from another's when both start from the same x_T.

numpy only. Every function takes a batch (N, ...) and returns one value per sample; the caller
averages. Conventions:

- **velocity MAE** in m/s: mean |v_a − v_b| over the 70×70 map.
- **velocity SSIM**: the standard structural similarity of Wang et al. (2004) — 11×11 Gaussian
  window with σ = 1.5, K1 = 0.01, K2 = 0.03, weighted (population) local statistics, averaged over
  the *valid* positions (window fully inside the map: 60×60 for a 70×70 map), as in the reference
  MATLAB code and ``skimage.metrics.structural_similarity(gaussian_weights=True,
  use_sample_covariance=False)``. As OpenFWI and UB-Diff do, maps are first scaled to [0, 1] with
  the velocity label range (1500–4500 m/s for every OpenFWI dataset), so the data range is 1, i.e.
  3000 m/s. (SSIM's luminance term depends on the absolute level, so this scaling matters; it is
  not shift-invariant.) This is ``velocity_ssim``, the *valid-region* SSIM.
- **velocity SSIM, OpenFWI convention** (``velocity_ssim_openfwi``): what OpenFWI's ``test.py``,
  UB-Diff and the DAC 2025 contest publish — pytorch_ssim (Po-Hsun Su): the same window and
  constants, but the local statistics are zero-padded 'same' convolutions over the whole 70×70
  map, and one mean is taken over every position of every map (equal-size maps: the mean of the
  per-map means, which is what this returns per map). Maps on [0, 1] as (v − 1500) / 3000, not
  clipped. The zero padding pulls the border positions down, so it is lower than the valid-region
  SSIM for the same pair; every printed SSIM says which of the two it is.
- **seismic relative L2**: ‖s − s_ref‖ / ‖s_ref‖ over all 5×1000×70 values, in OpenFWI amplitude
  units (dominated by the strong direct wave), and the same after sign(s)·log1p(|s|) ("log
  amplitude", the compression the model is trained in, which weighs reflections more).
- **correlation**: Pearson correlation of the flattened arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

LABEL_MIN, LABEL_MAX = 1500.0, 4500.0  # m/s: the velocity label range of every OpenFWI dataset
VELOCITY_DATA_RANGE = LABEL_MAX - LABEL_MIN  # 3000 m/s: SSIM's data range (1 after scaling to [0, 1])
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _per_sample(x: Any) -> np.ndarray:
    """(N, ...) → (N, D) float64."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim < 2:
        raise ValueError(f"expected a batch (N, ...), got shape {a.shape}")
    return a.reshape(a.shape[0], -1)


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian taps; the 2-D window is their outer product (separable)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x**2) / (2.0 * sigma**2))
    return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering of the last two axes (no padding)."""
    k = g.size
    h, w = x.shape[-2:]
    if h < k or w < k:
        raise ValueError(f"SSIM window {k} is larger than the {h}×{w} image")
    y = sum(g[i] * x[..., i : h - k + 1 + i, :] for i in range(k))
    return sum(g[j] * y[..., :, j : w - k + 1 + j] for j in range(k))


def ssim(
    a: Any,
    b: Any,
    data_range: float = 1.0,
    window: int = SSIM_WINDOW,
    sigma: float = SSIM_SIGMA,
    k1: float = SSIM_K1,
    k2: float = SSIM_K2,
) -> np.ndarray:
    """SSIM over the last two axes; returns an array of shape ``a.shape[:-2]`` (a 0-d array for one image)."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    _check_pair(x, y)
    if x.ndim < 2:
        raise ValueError(f"SSIM needs images (..., H, W), got shape {x.shape}")
    if not data_range > 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    return _ssim_map(x, y, gaussian_window(window, sigma), (k1 * data_range) ** 2, (k2 * data_range) ** 2, _filter_valid).mean(axis=(-2, -1))


def _ssim_map(x: np.ndarray, y: np.ndarray, g: np.ndarray, c1: float, c2: float, filt) -> np.ndarray:
    """The SSIM map of Wang et al. with local moments from ``filt`` (valid region or zero-padded 'same')."""
    mu_x, mu_y = filt(x, g), filt(y, g)
    var_x = filt(x * x, g) - mu_x**2
    var_y = filt(y * y, g) - mu_y**2
    cov = filt(x * y, g) - mu_x * mu_y
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))


def _filter_same_zero(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'same' filtering of the last two axes with zero padding (pytorch_ssim's conv2d)."""
    k = g.size
    p = k // 2
    pad = [(0, 0)] * (x.ndim - 2) + [(p, p), (p, p)]
    return _filter_valid(np.pad(x, pad), g)


def ssim_openfwi(a: Any, b: Any, window: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """pytorch_ssim's SSIM of images on [0, 1] over the last two axes (zero-padded borders, C1 = 0.01²,
    C2 = 0.03²), one value (the mean SSIM map) per image: shape ``a.shape[:-2]``."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    _check_pair(x, y)
    if x.ndim < 2:
        raise ValueError(f"SSIM needs images (..., H, W), got shape {x.shape}")
    return _ssim_map(x, y, gaussian_window(window, sigma), SSIM_K1**2, SSIM_K2**2, _filter_same_zero).mean(axis=(-2, -1))


def velocity_ssim_openfwi(a: Any, b: Any, label_min: float = LABEL_MIN, label_max: float = LABEL_MAX) -> np.ndarray:
    """Per-sample SSIM of velocity maps in m/s, OpenFWI convention (``ssim_openfwi`` on (v − label_min) /
    (label_max − label_min), i.e. OpenFWI's normalised map / 2 + 0.5); the set's SSIM is the mean."""
    return _velocity_ssim(a, b, label_min, label_max, ssim_openfwi)


def velocity_ssim(a: Any, b: Any, label_min: float = LABEL_MIN, label_max: float = LABEL_MAX) -> np.ndarray:
    """Per-sample SSIM of velocity maps (N,1,70,70) or (N,70,70) in m/s, scaled to [0, 1] by the
    label range first (data range 1 = 3000 m/s); channels averaged."""
    return _velocity_ssim(a, b, label_min, label_max, ssim)


def _velocity_ssim(a: Any, b: Any, label_min: float, label_max: float, fn) -> np.ndarray:
    """Maps in m/s → [0, 1] by the label range, ``fn`` per map, channels averaged: one value per sample."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    _check_pair(x, y)
    span = float(label_max - label_min)
    s = fn((x - label_min) / span, (y - label_min) / span)
    return s.reshape(x.shape[0], -1).mean(axis=1)


def mae(a: Any, b: Any) -> np.ndarray:
    """Per-sample mean absolute difference (m/s for velocity maps)."""
    x, y = _per_sample(a), _per_sample(b)
    _check_pair(x, y)
    return np.abs(x - y).mean(axis=1)


def rel_l2(x: Any, ref: Any) -> np.ndarray:
    """Per-sample ‖x − ref‖ / ‖ref‖ (NaN where ref is all zero)."""
    a, r = _per_sample(x), _per_sample(ref)
    _check_pair(a, r)
    num = np.linalg.norm(a - r, axis=1)
    den = np.linalg.norm(r, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def correlation(a: Any, b: Any) -> np.ndarray:
    """Per-sample Pearson correlation of the flattened arrays (NaN where one side is constant)."""
    x, y = _per_sample(a), _per_sample(b)
    _check_pair(x, y)
    x = x - x.mean(axis=1, keepdims=True)
    y = y - y.mean(axis=1, keepdims=True)
    den = np.sqrt((x * x).sum(axis=1) * (y * y).sum(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, (x * y).sum(axis=1) / np.where(den > 0, den, 1.0), np.nan)


def log_amplitude(s: Any) -> np.ndarray:
    """sign(s)·log1p(|s|): OpenFWI's compression of seismic amplitudes (zero stays zero)."""
    a = np.asarray(s, dtype=np.float64)
    return np.sign(a) * np.log1p(np.abs(a))


def seismic_errors(s: Any, s_ref: Any) -> dict[str, np.ndarray]:
    """Per-sample relative L2 (raw and log amplitude) and correlation of ``s`` against ``s_ref``."""
    return {
        "rel_l2": rel_l2(s, s_ref),
        "corr": correlation(s, s_ref),
        "rel_l2_log": rel_l2(log_amplitude(s), log_amplitude(s_ref)),
    }


def compare_samples(
    velocity: Any, seismic: Any, velocity_ref: Any, seismic_ref: Any, label_min: float = LABEL_MIN, label_max: float = LABEL_MAX
) -> dict[str, np.ndarray]:
    """All fidelity metrics of one batch of samples against the reference batch, per sample."""
    out = {"velocity_mae": mae(velocity, velocity_ref), "velocity_ssim": velocity_ssim(velocity, velocity_ref, label_min, label_max)}
    out.update({f"seismic_{k}": v for k, v in seismic_errors(seismic, seismic_ref).items()})
    return out


def summarize(values: Any) -> dict[str, Any]:
    """mean/std/min/median/max over samples (NaNs ignored and counted) plus the per-sample list."""
    v = np.asarray(values, dtype=np.float64).ravel()
    finite = v[np.isfinite(v)]

    def f(x: float) -> float | None:
        return float(x) if np.isfinite(x) else None

    stats = {"n": int(v.size), "nan": int(v.size - finite.size)}
    if finite.size:
        stats.update(mean=f(finite.mean()), std=f(finite.std()), min=f(finite.min()), median=f(np.median(finite)), max=f(finite.max()))
    else:
        stats.update(mean=None, std=None, min=None, median=None, max=None)
    stats["per_sample"] = [f(x) for x in v]
    return stats
