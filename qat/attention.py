"""Attention blocks with their matrix products quantized (softmax and norms stay float).

Each class subclasses the float block and repeats its forward with the two ``torch.matmul`` calls
routed through :class:`QMatMul`; conversion swaps ``__class__`` in place, so parameter names do not
change. ``tests/qat`` checks that, with quantizers disabled, each forward equals the float one.
"""

from __future__ import annotations

import torch
from torch import nn

from ubdiff_onnx.models.seismic_decoder import ViTAttention
from ubdiff_onnx.models.unet1d import Attention, LinearAttention
from ubdiff_onnx.qat.modules import QMatMul


class QViTAttention(ViTAttention):
    matmul_qk: QMatMul
    matmul_av: QMatMul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (self.matmul_qk(q, k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        out = self.matmul_av(attn, v).transpose(1, 2).reshape(b, n, d)
        return self.proj(out)


class QLinearAttention(LinearAttention):
    matmul_kv: QMatMul
    matmul_cq: QMatMul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, n = x.shape
        q, k, v = (t.reshape(b, self.heads, self.dim_head, n) for t in self.to_qkv(self.norm(x)).chunk(3, dim=1))
        q = q.softmax(dim=-2) * self.scale
        k = k.softmax(dim=-1)
        context = self.matmul_kv(k, v.transpose(-1, -2))
        out = self.matmul_cq(context.transpose(-1, -2), q)
        return self.out_norm(self.to_out(out.reshape(b, -1, n))) + x


class QAttention(Attention):
    matmul_qk: QMatMul
    matmul_av: QMatMul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, n = x.shape
        q, k, v = (t.reshape(b, self.heads, self.dim_head, n) for t in self.to_qkv(self.norm(x)).chunk(3, dim=1))
        sim = self.matmul_qk((q * self.scale).transpose(-1, -2), k)
        out = self.matmul_av(sim.softmax(dim=-1), v.transpose(-1, -2))
        out = out.permute(0, 1, 3, 2).reshape(b, -1, n)
        return self.to_out(out) + x


_MATMULS: dict[type, tuple[type, tuple[str, str]]] = {
    ViTAttention: (QViTAttention, ("matmul_qk", "matmul_av")),
    LinearAttention: (QLinearAttention, ("matmul_kv", "matmul_cq")),
    Attention: (QAttention, ("matmul_qk", "matmul_av")),
}


def matmul_names(module: nn.Module) -> tuple[str, str] | None:
    """Names of a quantized attention block's two QMatMuls in the order its forward calls them
    (what ``export --format qdq`` needs to match them to the graph's MatMul nodes); None otherwise."""
    for q_cls, names in _MATMULS.values():
        if type(module) is q_cls:
            return names
    return None


def is_attention(module: nn.Module) -> bool:
    return type(module) in _MATMULS


def quantize_attention_(module: nn.Module) -> nn.Module:
    """Swap a float attention block to its quantized-matmul class in place (idempotent)."""
    if type(module) in (QViTAttention, QLinearAttention, QAttention):
        return module
    cls, names = _MATMULS[type(module)]
    device = next(module.parameters()).device
    module.__class__ = cls
    for name in names:
        setattr(module, name, QMatMul().to(device))
    return module
