"""Exact rewrites of ConvTranspose2d into operators onnxruntime runs in INT8.

onnxruntime's CPU provider has no INT8 ConvTranspose (microsoft/onnxruntime#8988): a QDQ
ConvTranspose runs in float and dequantises its weights on every call. The velocity decoder's
ConvTranspose layers are therefore rewritten, exactly in FP32, before export:

- on a 1×1 input, ConvTranspose(k) is a matrix product: ``Linear(C → O·k·k)`` + reshape;
- stride 2, kernel 4, padding 1 is a sub-pixel convolution: four 2×2 convolutions, one per output
  phase, over shifted views of the 1-padded input, interleaved by ``pixel_shuffle(2)``
  (DepthToSpace). In 1-D: y[2m] = w₁·x[m] + w₃·x[m-1] and y[2m+1] = w₀·x[m+1] + w₂·x[m], so over
  the padded window (x[m-1], x[m], x[m+1]) phase 0 uses taps (w₃, w₁) at offsets 0-1 and phase 1
  uses (w₂, w₀) at offsets 1-2.
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
    """ConvTranspose2d(k=4, s=2, p=1) as four 2×2 phase convolutions + pixel_shuffle(2) (exact).

    Output pixel (2m+ry, 2n+rx) only ever sees the 2×2 input window starting at (m+ry-1, n+rx-1)
    of the input, through 4 of the 16 kernel taps; each phase is a plain convolution over a shifted
    view of the 1-padded input. Same weights and MACs as the ConvTranspose (no zero taps), and
    every convolution runs as QLinearConv in onnxruntime.
    """

    def __init__(self, ct: nn.ConvTranspose2d) -> None:
        super().__init__()
        c, o, _, _ = ct.weight.shape
        w = ct.weight.detach()
        self.phases = nn.ModuleList()
        for ry in (0, 1):
            for rx in (0, 1):
                conv = nn.Conv2d(c, o, 2, bias=True)
                kernel = torch.empty(o, c, 2, 2, dtype=w.dtype)
                for a in (0, 1):
                    for b in (0, 1):
                        kernel[:, :, a, b] = w[:, :, _TAPS[ry][a + ry], _TAPS[rx][b + rx]].t()
                with torch.no_grad():
                    conv.weight.copy_(kernel)
                    conv.bias.copy_(ct.bias.detach() if ct.bias is not None else torch.zeros(o))
                self.phases.append(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        xp = F.pad(x, (1, 1, 1, 1))
        outs = [conv(xp[:, :, ry:ry + h + 1, rx:rx + w + 1]) for (ry, rx), conv in zip(((0, 0), (0, 1), (1, 0), (1, 1)), self.phases)]
        y = torch.stack(outs, dim=2)  # (B, O, 4, H, W): channel order (o, ry, rx) as pixel_shuffle expects
        return F.pixel_shuffle(y.reshape(y.shape[0], -1, h, w), 2)


class FlatLinear(nn.Linear):
    """``nn.Linear`` that flattens leading dimensions, so a Linear on (B, N, D) tokens exports as one
    Gemm with its bias (instead of MatMul + Add): the INT8 kernel then quantizes the biased output,
    which is where QAT put that layer's output scale. Swapped in by ``__class__`` (same parameters,
    same module path)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x.reshape(-1, x.shape[-1]), self.weight, self.bias)
        return y.reshape(*x.shape[:-1], y.shape[-1])


def flatten_linears_(module: nn.Module) -> int:
    """Turn every ``nn.Linear`` under ``module`` into :class:`FlatLinear` in place; returns how many."""
    count = 0
    for m in module.modules():
        if type(m) is nn.Linear:
            m.__class__ = FlatLinear
            count += 1
    return count


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
