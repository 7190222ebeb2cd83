"""Velocity encoder, latent projectors and velocity decoder (the CNN half of UB-Diff's VSNet)."""

from __future__ import annotations

import torch
from torch import nn

from ubdiff_onnx.config import UBDiffConfig
from ubdiff_onnx.models.layers import ConvNormAct


class VelocityEncoder(nn.Module):
    """Velocity map (B,1,70,70) → latent (B,L,1,1) in [-1,1]; used for training only.

    70 → 35 → 18 → 16 → 8 → 4 → 2 → 1 with 15 Conv+BN+ReLU blocks and a final Conv+BN+Tanh.
    """

    def __init__(self, cfg: UBDiffConfig) -> None:
        super().__init__()
        d1, d2, d3, d4 = cfg.encoder_dims
        c = cfg.velocity_shape[0]
        # (in, out, kernel, stride, padding) in the original's order (convBlock1_1 … convBlock8).
        spec = [
            (c, d1, 1, 1, 0), (d1, d1, 3, 1, 1),
            (d1, d2, 3, 2, 1), (d2, d2, 1, 1, 0),
            (d2, d2, 3, 1, 1), (d2, d2, 1, 1, 0),
            (d2, d3, 3, 2, 1), (d3, d3, 1, 1, 0),
            (d3, d3, 3, 1, 0), (d3, d3, 1, 1, 0),
            (d3, d4, 3, 2, 1), (d4, d4, 1, 1, 0),
            (d4, d4, 3, 2, 1), (d4, d4, 3, 2, 1),
        ]
        layers = [ConvNormAct(i, o, k, s, p) for i, o, k, s, p in spec]
        layers.append(ConvNormAct(d4, cfg.latent_dim, 3, 2, 1, act="tanh"))
        self.layers = nn.Sequential(*layers)

    def forward(self, velocity: torch.Tensor) -> torch.Tensor:
        return self.layers(velocity)


class LatentProjector(nn.Module):
    """Latent (B,L) → Linear → BatchNorm2d → LeakyReLU(0.2), returned as (B,C,1,1)."""

    def __init__(self, latent_dim: int, width: int) -> None:
        super().__init__()
        self.fc = nn.Linear(latent_dim, width)
        self.norm = nn.BatchNorm2d(width)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = self.fc(z.reshape(z.shape[0], -1))
        return self.act(self.norm(z.reshape(z.shape[0], -1, 1, 1)))


class VelocityDecoder(nn.Module):
    """(B,C,1,1) → (B,1,70,70) in [-1,1]: 1→5→10→20→40→80, crop 5 px each side, Conv+BN+Tanh."""

    def __init__(self, cfg: UBDiffConfig) -> None:
        super().__init__()
        d1, d2, d3, d4, d5 = cfg.velocity_decoder_dims
        cin = cfg.velocity_latent
        self.blocks = nn.Sequential(
            ConvNormAct(cin, d5, 5, 1, 0, transpose=True),   # 1 → 5
            ConvNormAct(d5, d5, 3, 1, 1),
            ConvNormAct(d5, d4, 4, 2, 1, transpose=True),    # 5 → 10
            ConvNormAct(d4, d4, 3, 1, 1),
            ConvNormAct(d4, d3, 4, 2, 1, transpose=True),    # 10 → 20
            ConvNormAct(d3, d3, 3, 1, 1),
            ConvNormAct(d3, d2, 4, 2, 1, transpose=True),    # 20 → 40
            ConvNormAct(d2, d2, 3, 1, 1),
            ConvNormAct(d2, d1, 4, 2, 1, transpose=True),    # 40 → 80
            ConvNormAct(d1, d1, 3, 1, 1),
        )
        self.crop = 5
        self.head = ConvNormAct(d1, cfg.velocity_shape[0], 3, 1, 1, act="tanh")

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.blocks(z)
        c = self.crop
        x = x[:, :, c:-c, c:-c]  # == F.pad(x, [-5]*4): the original's negative-pad crop
        return self.head(x)
