"""Small building blocks shared by the encoder and the velocity decoder."""

from __future__ import annotations

import torch
from torch import nn


class ConvNormAct(nn.Module):
    """Conv2d (or ConvTranspose2d) → BatchNorm2d → activation.

    Kept as three named children (``conv``, ``norm``, ``act``) so BatchNorm folding and fake-quant
    can find the conv that feeds each norm.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int | tuple[int, int] = 3,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 1,
        *,
        transpose: bool = False,
        act: str = "relu",
    ) -> None:
        super().__init__()
        conv_cls = nn.ConvTranspose2d if transpose else nn.Conv2d
        self.conv = conv_cls(in_ch, out_ch, kernel, stride, padding)
        self.norm = nn.BatchNorm2d(out_ch)
        self.act = {"relu": nn.ReLU(), "tanh": nn.Tanh()}[act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))
