"""End-of-stage sample check: are DDIM samples closer to the data than noise is?

Measured in the encoder's latent space: for each generated latent, the distance to its nearest
training latent, averaged. Two baselines: standard normal noise (what sampling starts from) and
Gaussian noise with the data's per-dimension mean and std (a much harder baseline: it already has
the right marginal scale, only the structure is missing). Decoded samples are saved for a look.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ubdiff_onnx.models.ubdiff import UBDiff
from ubdiff_onnx.runtime.normalization import NormConstants, denormalize_seismic, denormalize_velocity


def nn_distance(points: torch.Tensor, data: torch.Tensor) -> float:
    """Mean over ``points`` of the L2 distance to the nearest row of ``data`` (both (N, L))."""
    return float(torch.cdist(points.double(), data.double()).min(dim=1).values.mean())


@torch.no_grad()
def sample_report(model: UBDiff, unet: nn.Module, train_latents: torch.Tensor, n: int, steps: int, seed: int,
                  device: torch.device) -> tuple[dict[str, float], torch.Tensor]:
    """DDIM-``steps`` samples from a seeded x_T with ``unet``; returns metrics and the latents (n, L)."""
    g = torch.Generator().manual_seed(seed)
    length = train_latents.shape[-1]
    x_T = torch.randn((n, 1, length), generator=g)
    x0 = model.diffusion.ddim_sample(unet, x_T.to(device), steps).reshape(n, -1).cpu()
    data = train_latents.reshape(len(train_latents), -1).cpu()
    mean, std = data.mean(0), data.std(0)
    noise = torch.randn((n, length), generator=g)
    metrics = {
        "sample_nn": nn_distance(x0, data),
        "noise_nn": nn_distance(noise, data),
        "gauss_nn": nn_distance(mean + std * torch.randn((n, length), generator=g), data),
        "data_nn": _leave_one_out_nn(data),
    }
    return metrics, x0


def _leave_one_out_nn(data: torch.Tensor) -> float:
    """Typical nearest-neighbour distance inside the data itself (the scale to compare against)."""
    d = torch.cdist(data.double(), data.double())
    d.fill_diagonal_(float("inf"))
    return float(d.min(dim=1).values.mean())


@torch.no_grad()
def save_samples(model: UBDiff, latents: torch.Tensor, constants: NormConstants, out: Path, stage: str,
                 device: torch.device, png: int = 1) -> Path:
    """Decode ``latents``; write ``<stage>.npz`` (physical units) and ``png`` PNGs (``<stage>-<i>.png``)
    when matplotlib is installed."""
    out.mkdir(parents=True, exist_ok=True)
    velocity, seismic = model.decode(latents.to(device))
    vel = denormalize_velocity(velocity.cpu().numpy(), constants)
    seis = denormalize_seismic(seismic.cpu().numpy(), constants)
    path = out / f"{stage}.npz"
    tmp = out / f".{stage}.npz.tmp"
    with open(tmp, "wb") as fh:
        np.savez(fh, velocity=vel, seismic=seis, latent=latents.cpu().numpy())
    tmp.replace(path)
    try:
        from ubdiff_onnx.data.plot import plot_sample
    except ImportError:
        return path
    try:
        for i in range(min(png, len(vel))):
            plot_sample(vel[i], seis[i], out / f"{stage}-{i}.png", title=f"{stage}: DDIM sample {i}")
    except ImportError:  # matplotlib is optional
        pass
    return path
