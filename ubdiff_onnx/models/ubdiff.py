"""UB-Diff as one module: encoder + projectors + two decoders + U-Net + diffusion schedule."""

from __future__ import annotations

import torch
from torch import nn

from ubdiff_onnx.config import UBDiffConfig
from ubdiff_onnx.models.autoencoder import LatentProjector, VelocityDecoder, VelocityEncoder
from ubdiff_onnx.models.diffusion import GaussianDiffusion
from ubdiff_onnx.models.seismic_decoder import SeismicDecoder
from ubdiff_onnx.models.unet1d import UNet1D


class UBDiff(nn.Module):
    def __init__(self, cfg: UBDiffConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = VelocityEncoder(cfg)
        self.velocity_projector = LatentProjector(cfg.latent_dim, cfg.velocity_latent)
        self.velocity_decoder = VelocityDecoder(cfg)
        self.seismic_projector = LatentProjector(cfg.latent_dim, cfg.seismic_latent)
        self.seismic_decoder = SeismicDecoder(cfg)
        self.unet = UNet1D(cfg)
        self.diffusion = GaussianDiffusion(cfg.timesteps, cfg.objective, cfg.beta_schedule, cfg.cosine_s)

    def encode(self, velocity: torch.Tensor) -> torch.Tensor:
        """Normalised velocity (B,1,70,70) → latent (B,L)."""
        return self.encoder(velocity).reshape(velocity.shape[0], -1)

    def decode_velocity(self, latent: torch.Tensor) -> torch.Tensor:
        return self.velocity_decoder(self.velocity_projector(latent))

    def decode_seismic(self, latent: torch.Tensor) -> torch.Tensor:
        return self.seismic_decoder(self.seismic_projector(latent))

    def decode(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent (B,L) or (B,1,L) → (velocity (B,1,70,70), seismic (B,5,1000,70)), normalised units."""
        latent = latent.reshape(latent.shape[0], -1)
        return self.decode_velocity(latent), self.decode_seismic(latent)

    @torch.no_grad()
    def sample_latents(self, x_T: torch.Tensor, steps: int | None = None, sampler: str = "ddim", eta: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """x_T (B,1,L) → x_0 (B,1,L) with DDIM (``steps``) or ancestral DDPM (all T steps)."""
        if sampler == "ddpm":
            return self.diffusion.ddpm_sample(self.unet, x_T, generator=generator)
        if sampler == "ddim":
            return self.diffusion.ddim_sample(self.unet, x_T, steps or self.cfg.timesteps, eta, generator)
        raise ValueError(f"unknown sampler {sampler!r} (ddim or ddpm)")


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
