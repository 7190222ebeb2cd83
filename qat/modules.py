"""Quantized layers that keep their float parameters where they were.

A float ``nn.Conv2d`` is turned into :class:`QConv2d` *in place* (``__class__`` swap plus three
quantizer children), so ``weight``/``bias`` keep their names and the module tree keeps its paths:
a QAT checkpoint's float weights load into the float model, and its scales sit next to them.
Every quantized op gets its input(s) and output fake-quantized, as onnxruntime's QDQ format wants
(DQ → op → Q is what it fuses into QLinearConv / QGemm / QLinearMatMul).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ubdiff_onnx.qat.fake_quant import DEFAULT_WEIGHT_RANGE, ActFakeQuant, WeightFakeQuant


class _QuantLayer:
    """Mixin: input, weight and output quantizers for a layer with ``weight`` and ``bias``."""

    input_quant: ActFakeQuant
    weight_quant: WeightFakeQuant
    output_quant: ActFakeQuant
    weight_axis = 0

    def _add_quantizers(self, weight_range: str) -> None:
        w = self.weight  # type: ignore[attr-defined]
        dev = w.device
        self.input_quant = ActFakeQuant().to(dev)
        self.weight_quant = WeightFakeQuant(w.shape[self.weight_axis], self.weight_axis, weight_range).to(dev)
        self.output_quant = ActFakeQuant().to(dev)


class QLinear(nn.Linear, _QuantLayer):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(self.input_quant(x), self.weight_quant(self.weight), self.bias)
        return self.output_quant(y)


class QConv1d(nn.Conv1d, _QuantLayer):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._conv_forward(self.input_quant(x), self.weight_quant(self.weight), self.bias)
        return self.output_quant(y)


class QConv2d(nn.Conv2d, _QuantLayer):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._conv_forward(self.input_quant(x), self.weight_quant(self.weight), self.bias)
        return self.output_quant(y)


class QConvTranspose2d(nn.ConvTranspose2d, _QuantLayer):
    """Weight layout (in, out, kh, kw): output channels are axis 1."""

    weight_axis = 1

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if output_size is not None:
            raise NotImplementedError("QConvTranspose2d does not take output_size")
        w = self.weight_quant(self.weight)
        y = F.conv_transpose2d(self.input_quant(x), w, self.bias, self.stride, self.padding,
                               self.output_padding, self.groups, self.dilation)
        return self.output_quant(y)


class QMatMul(nn.Module):
    """``a @ b`` with both operands and the result fake-quantized (→ QLinearMatMul)."""

    def __init__(self) -> None:
        super().__init__()
        self.a_quant = ActFakeQuant()
        self.b_quant = ActFakeQuant()
        self.output_quant = ActFakeQuant()

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.output_quant(torch.matmul(self.a_quant(a), self.b_quant(b)))


QUANT_CLASSES: dict[type, type] = {
    nn.Linear: QLinear,
    nn.Conv1d: QConv1d,
    nn.Conv2d: QConv2d,
    nn.ConvTranspose2d: QConvTranspose2d,
}


def quantize_layer_(layer: nn.Module, weight_range: str = DEFAULT_WEIGHT_RANGE) -> nn.Module:
    """Turn a float Linear/Conv layer into its quantized class in place (no-op if already done);
    ``weight_range``: see ``fake_quant.WEIGHT_RANGES``."""
    if isinstance(layer, _QuantLayer):
        return layer
    cls = QUANT_CLASSES.get(type(layer))
    if cls is None:
        raise TypeError(f"no quantized version of {type(layer).__name__}")
    if isinstance(layer, nn.ConvTranspose2d) and layer.groups != 1:
        raise TypeError("grouped ConvTranspose2d is not supported")
    if getattr(layer, "padding_mode", "zeros") != "zeros":
        raise TypeError("only zero padding is supported")
    layer.__class__ = cls
    layer._add_quantizers(weight_range)  # type: ignore[attr-defined]
    return layer
