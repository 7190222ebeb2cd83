"""Exact rewrites of ConvTranspose2d into operators onnxruntime runs in INT8.

onnxruntime's CPU provider has no INT8 ConvTranspose (microsoft/onnxruntime#8988): a QDQ
ConvTranspose runs in float and dequantises its weights on every call. The velocity decoder's
ConvTranspose layers are therefore rewritten, exactly in FP32, before export:

- on a 1×1 input, ConvTranspose(k) is a matrix product: ``Linear(C → O·k·k)`` + reshape;
- stride 2, kernel 4, padding 1 is a sub-pixel convolution: a 3×3 convolution (padding 1) with
  4·O output channels, one group per output phase, followed by ``pixel_shuffle(2)``
  (DepthToSpace). In 1-D: y[2m] = w₁·x[m] + w₃·x[m-1] and y[2m+1] = w₀·x[m+1] + w₂·x[m], so the
  phase-0 taps over (x[m-1], x[m], x[m+1]) are (w₃, w₁, 0) and the phase-1 taps are (0, w₂, w₀).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# For each output phase r (0/1), the transposed-kernel tap that lands on window position a (0..2).
_TAPS = {0: (3, 1, None), 1: (None, 2, 0)}


class PointConvTranspose(nn.Module):
    """ConvTranspose2d on a 1×1 input as Linear + reshape (exact)."""

    def __init__(self, ct: nn.ConvTranspose2d) -> None:
        super().__init__()
        c, o, kh, kw = ct.weight.shape
        self.out_shape = (o, kh, kw)
        self.linear = nn.Linear(c, o * kh * kw)
        with torch.no_grad():
            self.linear.weight.copy_(ct.weight.reshape(c, o * kh * kw).t())
            bias = ct.bias if ct.bias is not None else torch.zeros(o)
            self.linear.bias.copy_(bias[:, None].expand(o, kh * kw).reshape(-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.reshape(x.shape[0], -1)).reshape(x.shape[0], *self.out_shape)


class SubPixelConvTranspose(nn.Module):
    """ConvTranspose2d(k=4, s=2, p=1) as Conv2d(3×3, p=1, 4·O channels) + pixel_shuffle(2) (exact)."""

    def __init__(self, ct: nn.ConvTranspose2d) -> None:
        super().__init__()
        c, o, kh, kw = ct.weight.shape
        w = ct.weight.detach()
        conv_w = torch.zeros(o, 2, 2, c, 3, 3, dtype=w.dtype)  # (o, ry, rx, c, a, b) → CRD channel order
        for ry in (0, 1):
            for rx in (0, 1):
                for a, ky in enumerate(_TAPS[ry]):
                    for b, kx in enumerate(_TAPS[rx]):
                        if ky is not None and kx is not None:
                            conv_w[:, ry, rx, :, a, b] = w[:, :, ky, kx].t()
        self.conv = nn.Conv2d(c, 4 * o, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.copy_(conv_w.reshape(4 * o, c, 3, 3))
            bias = ct.bias.detach() if ct.bias is not None else torch.zeros(o)
            self.conv.bias.copy_(bias[:, None].expand(o, 4).reshape(-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.conv(x), 2)


def is_point(ct: nn.ConvTranspose2d) -> bool:
    return ct.stride == (1, 1) and ct.padding == (0, 0) and ct.output_padding == (0, 0) and ct.groups == 1 and ct.dilation == (1, 1)


def is_subpixel(ct: nn.ConvTranspose2d) -> bool:
    return (ct.kernel_size == (4, 4) and ct.stride == (2, 2) and ct.padding == (1, 1)
            and ct.output_padding == (0, 0) and ct.groups == 1 and ct.dilation == (1, 1))


def fold_batchnorm(conv: nn.Module, bn: nn.BatchNorm2d) -> None:
    """Fold an eval-mode BatchNorm into the preceding Conv2d/Linear/ConvTranspose2d, in place."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias.detach() - bn.running_mean * scale
    with torch.no_grad():
        if isinstance(conv, nn.ConvTranspose2d):
            conv.weight.mul_(scale[None, :, None, None])
        else:
            conv.weight.mul_(scale.reshape(-1, *([1] * (conv.weight.ndim - 1))))
        if conv.bias is None:
            conv.bias = nn.Parameter(torch.zeros_like(shift))
        conv.bias.mul_(scale).add_(shift)


def rewrite_velocity_decoder(decoder: nn.Module) -> int:
    """Replace the velocity decoder's ConvTranspose2d layers in place; returns how many.

    Its first block (1 → 5) always sees a (B, C, 1, 1) input (the projector's output), so the
    point rewrite is exact there; the other up-sampling blocks are k4/s2/p1.
    """
    count = 0
    for i, block in enumerate(decoder.blocks):
        ct = getattr(block, "conv", None)
        if not isinstance(ct, nn.ConvTranspose2d):
            continue
        if i == 0 and is_point(ct):
            block.conv = PointConvTranspose(ct)
        elif is_subpixel(ct):
            block.conv = SubPixelConvTranspose(ct)
        else:
            raise ValueError(f"blocks.{i}: no exact INT8-friendly rewrite for {ct}")
        count += 1
    return count
