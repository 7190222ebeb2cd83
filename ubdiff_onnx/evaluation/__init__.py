"""What quantization costs: fidelity, distribution and physics metrics, and the ``evaluate`` report.

- :mod:`.fidelity` — INT8 vs FP32 from the same x_T: velocity MAE (m/s) and SSIM, seismic relative
  L2 and correlation (numpy).
- :mod:`.distribution` — Fréchet distance in the trained encoder's latent space (FID stand-in),
  velocity statistics and histograms.
- :mod:`.physics` — forward-model generated velocity maps and compare with the generated seismic.
- :mod:`.run` — the ``evaluate`` pipeline; :mod:`.report` — evaluate.json/.md and PNG panels.

Importing this package imports numpy only; torch (encoder, forward model) and matplotlib are
imported where they are used.
"""

from ubdiff_onnx.evaluation.distribution import GaussianStats, frechet_distance, frechet_from_features, gaussian_stats, sqrtm_psd
from ubdiff_onnx.evaluation.fidelity import VELOCITY_DATA_RANGE, correlation, mae, rel_l2, ssim, velocity_ssim

__all__ = [
    "GaussianStats",
    "VELOCITY_DATA_RANGE",
    "correlation",
    "frechet_distance",
    "frechet_from_features",
    "gaussian_stats",
    "mae",
    "rel_l2",
    "sqrtm_psd",
    "ssim",
    "velocity_ssim",
]
