"""The judge's networks: OpenFWI's InversionNet (seismic → velocity) and a velocity feature network.

Both are trained on *real* pairs only and never see the diffusion model, so the numbers they give
(pairwise SSIM, per-modality Fréchet distances) do not come from the model being judged.

**InversionNet** follows lanl/OpenFWI ``network.py`` layer for layer (our own code): an encoder of
Conv+BN+LeakyReLU(0.2) blocks that takes (B,5,1000,70) down to (B,dim5,1,1), then a decoder of
ConvTranspose blocks up to 80×80, cropped by 5 px a side to 70×70, and Conv+BN+Tanh. At width 1
it has 24.4 M parameters. Two knobs make a judge that trains on 2 CPU cores:

- ``width`` multiplies every channel count (32, 64, 128, 256, 512);
- ``time_decimation`` d ∈ {1, 2, 4, 8} keeps every d-th time sample. OpenFWI's own subsampling
  flag only narrows the last kernel and breaks (the encoder's height falls below that kernel's 8
  rows); here the first log2(d) time-strided blocks get stride 1 instead, so every later block sees
  exactly the shape it sees at full time resolution (63→32→16→8 rows before the 8×9 kernel).

**VelocityFeatureNet** is a small convolutional auto-encoder of velocity maps whose bottleneck
(``feature_dim``, tanh) is the feature space of the velocity Fréchet distance: it is trained to
reconstruct real maps, so it keeps what distinguishes them (layer depths, faults, contrasts). The
seismic Fréchet distance uses InversionNet's own (B,dim5) bottleneck, the features the judge reads
the seismic with.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

SEISMIC_SHAPE = (5, 1000, 70)
VELOCITY_SHAPE = (1, 70, 70)
TIME_DECIMATIONS = (1, 2, 4, 8)
BASE_DIMS = (32, 64, 128, 256, 512)


@dataclass(frozen=True)
class JudgeConfig:
    """Sizes of the judge; ``width=1, time_decimation=1`` is OpenFWI's InversionNet."""

    width: float = 0.25
    time_decimation: int = 4
    feature_width: float = 0.5
    feature_dim: int = 128

    def __post_init__(self) -> None:
        from ubdiff_onnx.errors import UserError

        if not 0.0 < self.width <= 4.0:
            raise UserError(f"--width: expected a multiplier in (0, 4], got {self.width}")
        if self.time_decimation not in TIME_DECIMATIONS:
            raise UserError(f"--time-decimation: expected one of {', '.join(map(str, TIME_DECIMATIONS))}, got {self.time_decimation}")
        if not 0.0 < self.feature_width <= 4.0:
            raise UserError(f"feature_width: expected a multiplier in (0, 4], got {self.feature_width}")
        if self.feature_dim < 2:
            raise UserError(f"feature_dim: expected >= 2, got {self.feature_dim}")

    @property
    def dims(self) -> tuple[int, ...]:
        return tuple(max(1, int(round(d * self.width))) for d in BASE_DIMS)

    @property
    def bottleneck_dim(self) -> int:
        return self.dims[4]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "JudgeConfig":
        return cls(**{k: d[k] for k in ("width", "time_decimation", "feature_width", "feature_dim") if k in d})


class ConvBlock(nn.Sequential):
    """Conv2d → BatchNorm2d → LeakyReLU(0.2) (or Tanh), as OpenFWI's ConvBlock."""

    def __init__(self, cin: int, cout: int, kernel: Any = 3, stride: Any = 1, padding: Any = 1, act: str = "leaky") -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, padding),
            nn.BatchNorm2d(cout),
            nn.LeakyReLU(0.2, inplace=True) if act == "leaky" else nn.Tanh(),
        )


class DeconvBlock(nn.Sequential):
    """ConvTranspose2d → BatchNorm2d → LeakyReLU(0.2), as OpenFWI's DeconvBlock."""

    def __init__(self, cin: int, cout: int, kernel: int = 2, stride: int = 2, padding: int = 0) -> None:
        super().__init__(nn.ConvTranspose2d(cin, cout, kernel, stride, padding), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, inplace=True))


class InversionNet(nn.Module):
    """(B,5,T/d,70) normalised seismic → (B,1,70,70) velocity in [-1,1]; ``features`` gives the bottleneck."""

    def __init__(self, cfg: JudgeConfig = JudgeConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        d1, d2, d3, d4, d5 = cfg.dims
        # OpenFWI halves the time axis in the first four blocks; decimation by 2^k takes the first k.
        k = int(math.log2(cfg.time_decimation))
        ts = [1 if i < k else 2 for i in range(4)]
        self.encoder = nn.Sequential(
            ConvBlock(5, d1, (7, 1), (ts[0], 1), (3, 0)),
            ConvBlock(d1, d2, (3, 1), (ts[1], 1), (1, 0)),
            ConvBlock(d2, d2, (3, 1), 1, (1, 0)),
            ConvBlock(d2, d2, (3, 1), (ts[2], 1), (1, 0)),
            ConvBlock(d2, d2, (3, 1), 1, (1, 0)),
            ConvBlock(d2, d3, (3, 1), (ts[3], 1), (1, 0)),
            ConvBlock(d3, d3, (3, 1), 1, (1, 0)),
            ConvBlock(d3, d3, 3, 2, 1),
            ConvBlock(d3, d3),
            ConvBlock(d3, d4, 3, 2, 1),
            ConvBlock(d4, d4),
            ConvBlock(d4, d4, 3, 2, 1),
            ConvBlock(d4, d4),
            ConvBlock(d4, d5, (8, math.ceil(70 / 8)), 1, 0),
        )
        self.decoder = nn.Sequential(
            DeconvBlock(d5, d5, 5),
            ConvBlock(d5, d5),
            DeconvBlock(d5, d4, 4, 2, 1),
            ConvBlock(d4, d4),
            DeconvBlock(d4, d3, 4, 2, 1),
            ConvBlock(d3, d3),
            DeconvBlock(d3, d2, 4, 2, 1),
            ConvBlock(d2, d2),
            DeconvBlock(d2, d1, 4, 2, 1),
            ConvBlock(d1, d1),
        )
        self.head = ConvBlock(d1, 1, act="tanh")

    def decimate(self, seismic: torch.Tensor) -> torch.Tensor:
        """Full-rate (B,5,1000,70) → what the network reads (every d-th time sample)."""
        d = self.cfg.time_decimation
        return seismic[:, :, ::d, :] if d > 1 else seismic

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Bottleneck (B, dim5) of decimated seismic."""
        return self.encoder(x).flatten(1)

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(velocity (B,1,70,70), bottleneck (B, dim5)) from one pass: the judge needs both."""
        z = self.encoder(x)
        y = F.pad(self.decoder(z), [-5, -5, -5, -5])  # 80×80 → 70×70
        return self.head(y), z.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_features(x)[0]


class VelocityFeatureNet(nn.Module):
    """Auto-encoder of (B,1,70,70) velocity in [-1,1]; ``features`` is the tanh bottleneck."""

    def __init__(self, cfg: JudgeConfig = JudgeConfig()) -> None:
        super().__init__()
        c = [max(1, int(round(b * cfg.feature_width))) for b in (32, 64, 128, 256)]
        self.encoder = nn.Sequential(
            ConvBlock(1, c[0], 3, 2, 1),      # 35
            ConvBlock(c[0], c[0]),
            ConvBlock(c[0], c[1], 3, 2, 1),   # 18
            ConvBlock(c[1], c[1]),
            ConvBlock(c[1], c[2], 3, 2, 1),   # 9
            ConvBlock(c[2], c[2]),
            ConvBlock(c[2], c[3], 3, 2, 1),   # 5
            nn.Flatten(),
            nn.Linear(c[3] * 25, cfg.feature_dim),
            nn.Tanh(),
        )
        self.expand = nn.Linear(cfg.feature_dim, c[3] * 25)
        self.c3 = c[3]
        self.decoder = nn.Sequential(
            DeconvBlock(c[3], c[2], 4, 2, 1),  # 10
            ConvBlock(c[2], c[2]),
            DeconvBlock(c[2], c[1], 4, 2, 1),  # 20
            ConvBlock(c[1], c[1]),
            DeconvBlock(c[1], c[0], 4, 2, 1),  # 40
            ConvBlock(c[0], c[0]),
            DeconvBlock(c[0], c[0], 4, 2, 1),  # 80
        )
        self.head = ConvBlock(c[0], 1, act="tanh")

    def features(self, v: torch.Tensor) -> torch.Tensor:
        return self.encoder(v)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        y = self.expand(self.features(v)).view(-1, self.c3, 5, 5)
        y = F.pad(self.decoder(y), [-5, -5, -5, -5])
        return self.head(y)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
