"""Seismic decoder: a 2-token ViT on the projected latent, then one huge Linear to (5,1000,70).

The Linear(640 → 350000) holds ~224 M weights (most of the model): it dominates file size and
decode time, which is why the export side quantises it (INT8, optionally 4-bit).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ubdiff_onnx.config import UBDiffConfig


class ViTAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (torch.matmul(q, k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        out = torch.matmul(attn, v).transpose(1, 2).reshape(b, n, d)
        return self.proj(out)


class ViTMlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))  # exact (erf) GELU, as the original


class ViTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = ViTAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = ViTMlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class SeismicViT(nn.Module):
    """ViT over a single 1×1 'patch' plus a CLS token (sequence length 2)."""

    def __init__(self, cfg: UBDiffConfig) -> None:
        super().__init__()
        d = cfg.seismic_latent
        # A patch-1 Conv2d on a 1×1 map is a Linear; stored as one so it exports as a Gemm.
        self.patch_embed = nn.Linear(d, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, 2, d))
        self.blocks = nn.ModuleList(ViTBlock(d, cfg.seismic_heads, cfg.seismic_mlp_ratio) for _ in range(cfg.seismic_depth))
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.head = nn.Linear(d, 1000) if cfg.seismic_vit_head else None  # unused (see config)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B,d,1,1) → normalised tokens (B,2,d): token 0 = CLS, token 1 = the patch."""
        tokens = self.patch_embed(z.reshape(z.shape[0], 1, -1))
        x = torch.cat([self.cls_token.expand(z.shape[0], -1, -1), tokens], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class SeismicDecoder(nn.Module):
    def __init__(self, cfg: UBDiffConfig) -> None:
        super().__init__()
        self.shape = tuple(cfg.seismic_shape)
        self.token = 1 if cfg.seismic_token == "patch" else 0
        self.vit = SeismicViT(cfg)
        c, h, w = self.shape
        self.out = nn.Linear(cfg.seismic_latent, c * h * w)

    def features(self, z: torch.Tensor) -> torch.Tensor:
        """The ViT token that feeds the big Linear, (B, d)."""
        return self.vit(z)[:, self.token]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(z)).reshape(z.shape[0], *self.shape)
