"""Distribution: do generated velocity maps look like real ones, as a population?

**Fréchet distance in the encoder's latent space** (a self-contained stand-in for FID). FID embeds
images with an ImageNet Inception network, which knows nothing about velocity models and is not
available offline. We embed with UB-Diff's own *trained velocity encoder* (the CNN that defines
the latent space the diffusion model learns), fit a Gaussian (mean μ, covariance Σ) to the
latents of generated maps and of real maps, and report

    FD = ‖μ_g − μ_r‖² + tr(Σ_g + Σ_r − 2 (Σ_g^{1/2} Σ_r Σ_g^{1/2})^{1/2})

(the 2-Wasserstein distance between the two Gaussians; tr (Σ_g Σ_r)^{1/2} is computed through the
symmetric PSD matrix Σ_g^{1/2} Σ_r Σ_g^{1/2}, which has the same eigenvalues as Σ_g Σ_r, with
eigh — stable, no complex parts, no scipy). Units are squared latent units (the encoder ends in
tanh, so latents lie in [-1, 1]). Like FID it is biased upwards for small sample counts and only
comparable between runs with the same encoder, the same real set and the same sample counts; the
report therefore also gives the distance between two halves of the real set (its noise floor).

**Velocity statistics**: mean, std, percentiles, fraction outside the label range, a histogram and
the 1-D Wasserstein-1 distance (m/s) between pooled generated and real velocity values.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from ubdiff_onnx.errors import UserError


@dataclass(frozen=True)
class GaussianStats:
    mean: np.ndarray  # (D,)
    cov: np.ndarray  # (D, D)
    n: int


def gaussian_stats(features: Any) -> GaussianStats:
    """Mean and (unbiased) covariance of features (N, D); needs N ≥ 2."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {f.shape}")
    if f.shape[0] < 2:
        raise ValueError(f"a covariance needs at least 2 samples, got {f.shape[0]}")
    return GaussianStats(f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False)), int(f.shape[0]))


def sqrtm_psd(m: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (tiny negative eigenvalues → 0)."""
    s = 0.5 * (m + m.T)
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(a: GaussianStats, b: GaussianStats) -> float:
    """Fréchet (2-Wasserstein) distance between N(μ_a, Σ_a) and N(μ_b, Σ_b), ≥ 0."""
    if a.mean.shape != b.mean.shape:
        raise ValueError(f"feature sizes differ: {a.mean.shape} vs {b.mean.shape}")
    root_a = sqrtm_psd(a.cov)
    inner = root_a @ b.cov @ root_a
    eig = np.linalg.eigvalsh(0.5 * (inner + inner.T))
    tr_sqrt = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    d = float(np.sum((a.mean - b.mean) ** 2) + np.trace(a.cov) + np.trace(b.cov) - 2.0 * tr_sqrt)
    return max(d, 0.0)


def frechet_from_features(a: Any, b: Any) -> float:
    return frechet_distance(gaussian_stats(a), gaussian_stats(b))


# ---------------------------------------------------------------------------------------------
# the encoder (torch; imported only here)


class LatentEncoder:
    """The trained velocity encoder of a checkpoint: velocity (m/s) → latent (N, L).

    Only the ``encoder.*`` weights are kept (the rest of the checkpoint — for the ``paper`` preset
    nearly 1 GB of decoder weights — is dropped after loading).
    """

    def __init__(self, checkpoint: Path, threads: int = 1) -> None:
        import torch

        from ubdiff_onnx.checkpoints.format import check_state_dict, load_checkpoint
        from ubdiff_onnx.models.autoencoder import VelocityEncoder

        self.checkpoint = Path(checkpoint)
        ckpt = load_checkpoint(self.checkpoint)
        self.config = ckpt.config
        sd = {k[len("encoder.") :]: v for k, v in ckpt.state_dict.items() if k.startswith("encoder.")}
        if not sd:
            raise UserError(f"--checkpoint {checkpoint}: has no encoder weights (encoder.*); pass the training checkpoint")
        del ckpt
        model = VelocityEncoder(self.config)
        check_state_dict(model, sd, f"--checkpoint {checkpoint} (encoder)")
        model.load_state_dict(sd, strict=True)
        self.model = model.eval()
        self.threads = threads
        self._torch = torch

    @property
    def latent_dim(self) -> int:
        return int(self.config.latent_dim)

    def encode(self, velocity_ms: np.ndarray, norm, batch_size: int = 64, progress: Optional[Callable[[int], None]] = None) -> np.ndarray:
        """(N,1,70,70) m/s → (N, L) float64 latents, normalised with ``norm`` (NormConstants) first."""
        from ubdiff_onnx.runtime.normalization import normalize_velocity

        torch = self._torch
        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        out = []
        try:
            with torch.inference_mode():
                for start in range(0, len(velocity_ms), batch_size):
                    v = normalize_velocity(np.asarray(velocity_ms[start : start + batch_size], dtype=np.float32), norm)
                    z = self.model(torch.from_numpy(np.ascontiguousarray(v)))
                    out.append(z.reshape(z.shape[0], -1).double().numpy())
                    if progress:
                        progress(len(v))
        finally:
            torch.set_num_threads(before)
        return np.concatenate(out) if out else np.zeros((0, self.latent_dim))


# ---------------------------------------------------------------------------------------------
# velocity value statistics


def velocity_statistics(velocity_ms: Any, label_min: float = 1500.0, label_max: float = 4500.0, bin_width: float = 50.0) -> dict[str, Any]:
    """Pooled statistics of velocity values (m/s) and a histogram on a fixed grid around the label range."""
    v = np.asarray(velocity_ms, dtype=np.float64).ravel()
    edges = np.arange(label_min - 4 * bin_width, label_max + 4 * bin_width + bin_width / 2, bin_width)
    counts, _ = np.histogram(np.clip(v, edges[0], edges[-1]), bins=edges)
    p = np.percentile(v, [1, 5, 50, 95, 99])
    return {
        "mean": float(v.mean()),
        "std": float(v.std()),
        "min": float(v.min()),
        "max": float(v.max()),
        "p1": float(p[0]),
        "p5": float(p[1]),
        "p50": float(p[2]),
        "p95": float(p[3]),
        "p99": float(p[4]),
        "outside_label_range": float(np.mean((v < label_min) | (v > label_max))),
        "histogram": {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
    }


def wasserstein_1d(a: Any, b: Any, quantiles: int = 2001) -> float:
    """Wasserstein-1 distance between the value distributions of ``a`` and ``b`` (same units),
    ∫₀¹ |F_a⁻¹(q) − F_b⁻¹(q)| dq evaluated on a uniform quantile grid."""
    q = np.linspace(0.0, 1.0, quantiles)
    qa = np.quantile(np.asarray(a, dtype=np.float64).ravel(), q)
    qb = np.quantile(np.asarray(b, dtype=np.float64).ravel(), q)
    return float(np.trapezoid(np.abs(qa - qb), q)) if hasattr(np, "trapezoid") else float(np.trapz(np.abs(qa - qb), q))
