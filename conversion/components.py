"""The three exported graphs as small torch modules with the fixed I/O of SPEC §4.

Projectors live inside the decoder graphs, so the runtime feeds the raw latent (B,L).
"""

from __future__ import annotations

import torch
from torch import nn

from ubdiff_onnx.models.ubdiff import UBDiff


class UNetStep(nn.Module):
    """x (B,1,L) float32, t (B,) int64 raw step → model_output (B,1,L)."""

    def __init__(self, model: UBDiff) -> None:
        super().__init__()
        self.unet = model.unet

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.unet(x, t)


class VelocityDecoderGraph(nn.Module):
    """latent (B,L) → velocity (B,1,70,70), normalised to [-1,1]."""

    def __init__(self, model: UBDiff) -> None:
        super().__init__()
        self.projector = model.velocity_projector
        self.decoder = model.velocity_decoder

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.projector(latent))


class SeismicDecoderGraph(nn.Module):
    """latent (B,L) → seismic (B,5,1000,70), normalised units."""

    def __init__(self, model: UBDiff) -> None:
        super().__init__()
        self.projector = model.seismic_projector
        self.decoder = model.seismic_decoder

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.projector(latent))


def component_modules(model: UBDiff) -> dict[str, nn.Module]:
    model = model.eval()
    return {
        "unet": UNetStep(model).eval(),
        "velocity_decoder": VelocityDecoderGraph(model).eval(),
        "seismic_decoder": SeismicDecoderGraph(model).eval(),
    }


def example_inputs(name: str, latent_dim: int, batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    if name == "unet":
        return torch.randn(batch, 1, latent_dim, generator=g), torch.randint(0, 256, (batch,), generator=g)
    return (torch.randn(batch, latent_dim, generator=g).clamp(-1, 1),)
