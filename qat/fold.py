"""BatchNorm folding: conv/linear → BN becomes one conv/linear with rescaled weights and a new bias.

Folded before QAT so that the weights being quantized are the ones the deployed graph multiplies by
(int8 has no room for a separate BN after the fact), and so BN statistics cannot drift while the
quantized path trains. The norm module is replaced by ``nn.Identity``.
"""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def fold_bn_(layer: nn.Module, bn: nn.BatchNorm2d) -> None:
    """Fold eval-mode ``bn`` into ``layer`` (Linear, Conv1d/2d or ConvTranspose2d) in place."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("cannot fold a BatchNorm without running statistics")
    factor = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        factor = factor * bn.weight
    shift = -bn.running_mean * factor
    if bn.bias is not None:
        shift = shift + bn.bias
    w = layer.weight
    axis = 1 if isinstance(layer, nn.ConvTranspose2d) else 0
    shape = [1] * w.ndim
    shape[axis] = -1
    w.mul_(factor.reshape(shape))
    bias = layer.bias if layer.bias is not None else torch.zeros_like(factor)
    new_bias = bias * factor + shift
    if layer.bias is None:
        layer.bias = nn.Parameter(new_bias)
    else:
        layer.bias.copy_(new_bias)


def foldable_pairs(root: nn.Module, prefix: str = "") -> list[tuple[str, str]]:
    """(layer path, norm path) of every block whose ``conv``/``fc`` child feeds a BatchNorm ``norm``
    child — ConvNormAct and LatentProjector in this code base."""
    pairs = []
    for name, mod in root.named_modules(prefix=prefix):
        norm = getattr(mod, "norm", None)
        if not isinstance(norm, nn.BatchNorm2d):
            continue
        for child in ("conv", "fc"):
            if isinstance(getattr(mod, child, None), (nn.Linear, nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d)):
                pairs.append((f"{name}.{child}" if name else child, f"{name}.norm" if name else "norm"))
                break
    return pairs


def identity_bn_entries(norm_path: str, channels: int, eps: float = 1e-5) -> dict[str, torch.Tensor]:
    """State-dict entries of a BatchNorm that is the identity in eval mode (γ=1, β=0, μ=0, σ²=1-ε):
    how folded weights are stored in the float model's key layout, so a float model loads them."""
    return {
        f"{norm_path}.weight": torch.ones(channels),
        f"{norm_path}.bias": torch.zeros(channels),
        f"{norm_path}.running_mean": torch.zeros(channels),
        f"{norm_path}.running_var": torch.full((channels,), 1.0 - eps),
        f"{norm_path}.num_batches_tracked": torch.tensor(0, dtype=torch.long),
    }
