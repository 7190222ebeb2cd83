"""The denoiser: a time-conditioned 1-D U-Net over the latent (B,1,L).

Numerically identical to lucidrains' ``Unet1D`` as used by UB-Diff (ResnetBlocks with GroupNorm
and a per-block time scale/shift, LinearAttention per level, full attention in the middle, RMSNorm
pre-norm, sinusoidal time embedding + GELU MLP). Module names are our own; the checkpoint importer
maps the original names onto them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ubdiff_onnx.config import UBDiffConfig


class RMSNorm(nn.Module):
    """x / ||x||₂ over channels · g · √C (lucidrains' RMSNorm on (B,C,N))."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(1, dim, 1))
        self.scale = dim**0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) * self.gain * self.scale


class SinusoidalTimeEmbedding(nn.Module):
    """Raw integer step t (B,) → [sin(t·f), cos(t·f)], f_k = exp(-k·ln(10⁴)/(d/2-1))."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        half = dim // 2
        freqs = torch.exp(torch.arange(half) * -(math.log(10000) / (half - 1)))
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        args = t.to(self.freqs.dtype)[:, None] * self.freqs[None, :]
        return torch.cat((args.sin(), args.cos()), dim=-1)


class TimeMLP(nn.Module):
    def __init__(self, dim: int, time_dim: int) -> None:
        super().__init__()
        self.embed = SinusoidalTimeEmbedding(dim)
        self.fc1 = nn.Linear(dim, time_dim)
        self.fc2 = nn.Linear(time_dim, time_dim)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.embed(t))))


class ConvGroupNormAct(nn.Module):
    """Conv1d k3 → GroupNorm → optional (scale+1, shift) from the time embedding → SiLU."""

    def __init__(self, dim: int, dim_out: int, groups: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(dim, dim_out, 3, padding=1)
        self.norm = nn.GroupNorm(groups, dim_out)

    def forward(self, x: torch.Tensor, scale_shift: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        x = self.norm(self.conv(x))
        if scale_shift is not None:
            scale, shift = scale_shift
            x = x * (scale + 1) + shift
        return F.silu(x)


class ResnetBlock(nn.Module):
    def __init__(self, dim: int, dim_out: int, time_dim: int, groups: int) -> None:
        super().__init__()
        self.time_proj = nn.Linear(time_dim, dim_out * 2)
        self.block1 = ConvGroupNormAct(dim, dim_out, groups)
        self.block2 = ConvGroupNormAct(dim_out, dim_out, groups)
        self.skip = nn.Conv1d(dim, dim_out, 1) if dim != dim_out else nn.Identity()

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.time_proj(F.silu(t_emb))[:, :, None].chunk(2, dim=1)
        h = self.block2(self.block1(x, (scale, shift)))
        return h + self.skip(x)


class LinearAttention(nn.Module):
    """Residual(PreNorm(LinearAttention)): softmax over features for q, over positions for k."""

    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.scale = dim_head**-0.5
        hidden = heads * dim_head
        self.norm = RMSNorm(dim)
        self.to_qkv = nn.Conv1d(dim, hidden * 3, 1, bias=False)
        self.to_out = nn.Conv1d(hidden, dim, 1)
        self.out_norm = RMSNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, n = x.shape
        q, k, v = (t.reshape(b, self.heads, self.dim_head, n) for t in self.to_qkv(self.norm(x)).chunk(3, dim=1))
        q = q.softmax(dim=-2) * self.scale
        k = k.softmax(dim=-1)
        context = torch.matmul(k, v.transpose(-1, -2))          # (b,h,d,e) = Σ_n k[d,n] v[e,n]
        out = torch.matmul(context.transpose(-1, -2), q)         # (b,h,e,n) = Σ_d ctx[d,e] q[d,n]
        return self.out_norm(self.to_out(out.reshape(b, -1, n))) + x


class Attention(nn.Module):
    """Residual(PreNorm(full softmax attention over the sequence))."""

    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.scale = dim_head**-0.5
        hidden = heads * dim_head
        self.norm = RMSNorm(dim)
        self.to_qkv = nn.Conv1d(dim, hidden * 3, 1, bias=False)
        self.to_out = nn.Conv1d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, n = x.shape
        q, k, v = (t.reshape(b, self.heads, self.dim_head, n) for t in self.to_qkv(self.norm(x)).chunk(3, dim=1))
        sim = torch.matmul((q * self.scale).transpose(-1, -2), k)  # (b,h,i,j)
        out = torch.matmul(sim.softmax(dim=-1), v.transpose(-1, -2))  # (b,h,i,d)
        out = out.permute(0, 1, 3, 2).reshape(b, -1, n)  # 'b h n d -> b (h d) n'
        return self.to_out(out) + x


class Upsample(nn.Module):
    """Nearest ×2 then Conv1d k3 (or just the conv at the last level)."""

    def __init__(self, dim: int, dim_out: int, scale: int) -> None:
        super().__init__()
        self.scale = scale
        self.conv = nn.Conv1d(dim, dim_out, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale != 1:
            # Nearest upsampling (the original's nn.Upsample): exports as one Resize node, where
            # repeat_interleave exported as Unsqueeze → Expand → Reshape (paper QDQ step −7 %).
            x = F.interpolate(x, scale_factor=float(self.scale), mode="nearest")
        return self.conv(x)


class DownLevel(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, time_dim: int, cfg: UBDiffConfig, last: bool) -> None:
        super().__init__()
        g = cfg.unet_groups
        self.res1 = ResnetBlock(dim_in, dim_in, time_dim, g)
        self.res2 = ResnetBlock(dim_in, dim_in, time_dim, g)
        self.attn = LinearAttention(dim_in, cfg.unet_attn_heads, cfg.unet_attn_dim_head)
        self.down = nn.Conv1d(dim_in, dim_out, 3, padding=1) if last else nn.Conv1d(dim_in, dim_out, 4, 2, 1)


class UpLevel(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, time_dim: int, cfg: UBDiffConfig, last: bool) -> None:
        super().__init__()
        g = cfg.unet_groups
        self.res1 = ResnetBlock(dim_out + dim_in, dim_out, time_dim, g)
        self.res2 = ResnetBlock(dim_out + dim_in, dim_out, time_dim, g)
        self.attn = LinearAttention(dim_out, cfg.unet_attn_heads, cfg.unet_attn_dim_head)
        self.up = Upsample(dim_out, dim_in, 1 if last else 2)


class UNet1D(nn.Module):
    """ε/v/x₀ predictor: (x (B,1,L) float, t (B,) int64 raw step) → (B,1,L)."""

    def __init__(self, cfg: UBDiffConfig) -> None:
        super().__init__()
        dim = cfg.unet_dim
        dims = [dim, *(dim * m for m in cfg.unet_dim_mults)]
        pairs = list(zip(dims[:-1], dims[1:]))
        time_dim = dim * 4
        self.init_conv = nn.Conv1d(1, dim, 7, padding=3)
        self.time_mlp = TimeMLP(dim, time_dim)
        self.downs = nn.ModuleList(
            DownLevel(a, b, time_dim, cfg, last=i == len(pairs) - 1) for i, (a, b) in enumerate(pairs)
        )
        mid = dims[-1]
        self.mid_block1 = ResnetBlock(mid, mid, time_dim, cfg.unet_groups)
        self.mid_attn = Attention(mid, cfg.unet_attn_heads, cfg.unet_attn_dim_head)
        self.mid_block2 = ResnetBlock(mid, mid, time_dim, cfg.unet_groups)
        self.ups = nn.ModuleList(
            UpLevel(a, b, time_dim, cfg, last=i == len(pairs) - 1) for i, (a, b) in enumerate(reversed(pairs))
        )
        self.final_block = ResnetBlock(dim * 2, dim, time_dim, cfg.unet_groups)
        self.final_conv = nn.Conv1d(dim, 1, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x = self.init_conv(x)
        r = x
        t_emb = self.time_mlp(t)
        skips = []
        for level in self.downs:
            x = level.res1(x, t_emb)
            skips.append(x)
            x = level.attn(level.res2(x, t_emb))
            skips.append(x)
            x = level.down(x)
        x = self.mid_block2(self.mid_attn(self.mid_block1(x, t_emb)), t_emb)
        for level in self.ups:
            x = level.res1(torch.cat((x, skips.pop()), dim=1), t_emb)
            x = level.attn(level.res2(torch.cat((x, skips.pop()), dim=1), t_emb))
            x = level.up(x)
        x = self.final_block(torch.cat((x, r), dim=1), t_emb)
        return self.final_conv(x)
