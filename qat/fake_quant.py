"""Fake-quant modules: uint8 per-tensor affine activations, int8 symmetric per-channel weights.

Each quantizer has three behaviours, chosen by Python bools so that tracing sees a single branch:

- *observing* (activations): track the running min/max and pass the float tensor through
  (calibration, like onnxruntime's MinMax calibrator);
- *training* (after calibration): LSQ — ``torch._fake_quantize_learnable_*`` gives the scale a
  gradient scaled by 1/√(N·q_max);
- *eval / export*: ``torch.fake_quantize_per_tensor_affine`` with Python-number qparams and
  ``torch.fake_quantize_per_channel_affine`` with constant tensors, which
  ``torch.onnx.export(dynamo=True)`` turns into QuantizeLinear/DequantizeLinear.

Weights are int8 symmetric in one of two ranges (``WEIGHT_RANGES``), with the scale initialised to
max|w| / the range's symmetric bound:

- ``"reduced"`` (the default): [-64, 64], onnxruntime's ``reduce_range`` for int8 weights. A u8
  activation (0..255) times such a weight, summed in pairs, stays within int16 (2·255·64 = 32640), so
  the VPMADDUBSW kernels of x86 CPUs without VNNI (AVX2, AVX-512 without VNNI) compute it exactly;
- ``"full"``: [-128, 127] (scale max|w|/127, -128 reached only if LSQ shrinks a scale). Exact on ARM
  and on x86 with VNNI only; elsewhere the pair sums saturate (docs/int8-cpus.md).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ubdiff_onnx.runtime.int8_host import WEIGHT_RANGES

ACT_QMIN, ACT_QMAX = 0, 255
DEFAULT_WEIGHT_RANGE = "reduced"
EPS = 1e-8


def _register_fake_kernel() -> None:
    """torch 2.13 has no meta kernel for the per-tensor fake-quant op; without one ``torch.export``
    cannot trace it with a dynamic batch dimension."""
    try:
        @torch.library.register_fake("aten::fake_quantize_per_tensor_affine_cachemask")
        def _fake(x, scale, zero_point, quant_min, quant_max):  # noqa: ANN001
            return torch.empty_like(x), torch.empty_like(x, dtype=torch.bool)
    except RuntimeError:  # already registered (a newer torch, or a second import)
        pass


_register_fake_kernel()


def _qparams_from_range(lo: float, hi: float) -> tuple[float, int]:
    """uint8 affine scale/zero-point covering [min(lo,0), max(hi,0)] (0 stays exactly representable)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max((hi - lo) / (ACT_QMAX - ACT_QMIN), EPS)
    zp = int(min(max(round(ACT_QMIN - lo / scale), ACT_QMIN), ACT_QMAX))
    return scale, zp


class ActFakeQuant(nn.Module):
    """uint8 per-tensor affine fake-quant of an activation."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.register_buffer("zero_point", torch.zeros(1))
        self.register_buffer("min_val", torch.tensor(math.inf))
        self.register_buffer("max_val", torch.tensor(-math.inf))
        self.enabled = True
        self.observing = False
        self.calibrated = False
        self._const: tuple[float, int] = (1.0, 0)

    def start_observing(self) -> None:
        self.min_val.fill_(math.inf)
        self.max_val.fill_(-math.inf)
        self.observing = True

    @torch.no_grad()
    def finish_observing(self) -> None:
        """Scale/zero-point from the observed range; a quantizer that saw nothing keeps [0, 1]."""
        lo, hi = float(self.min_val), float(self.max_val)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            lo, hi = 0.0, 1.0
        scale, zp = _qparams_from_range(lo, hi)
        self.scale.fill_(scale)
        self.zero_point.fill_(zp)
        self.observing = False
        self.calibrated = True
        self.refresh()

    @torch.no_grad()
    def refresh(self) -> None:
        """Cache the qparams as Python numbers (export needs constants, not data-dependent tensors)."""
        self._const = (max(float(self.scale), EPS), int(round(float(self.zero_point))))

    @torch.no_grad()
    def constrain_(self) -> None:
        self.scale.clamp_(min=EPS)

    def train(self, mode: bool = True) -> "ActFakeQuant":
        super().train(mode)
        if not mode and self.calibrated:
            self.refresh()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        if self.observing:
            with torch.no_grad():
                self.min_val.copy_(torch.minimum(self.min_val, x.detach().min()))
                self.max_val.copy_(torch.maximum(self.max_val, x.detach().max()))
            return x
        if not self.calibrated:
            raise RuntimeError("ActFakeQuant used before calibration (run the observers first)")
        if self.training and self.scale.requires_grad:
            grad_factor = 1.0 / math.sqrt(x[0].numel() * ACT_QMAX)
            return torch._fake_quantize_learnable_per_tensor_affine(
                x, self.scale.clamp(min=EPS), self.zero_point, ACT_QMIN, ACT_QMAX, grad_factor)
        if not torch.compiler.is_compiling():
            self.refresh()  # eager eval always uses the current values; tracing uses the cache
        scale, zp = self._const
        return torch.fake_quantize_per_tensor_affine(x, scale, zp, ACT_QMIN, ACT_QMAX)

    def extra_repr(self) -> str:
        return f"uint8 per-tensor, enabled={self.enabled}, observing={self.observing}, calibrated={self.calibrated}"


class WeightFakeQuant(nn.Module):
    """int8 symmetric per-channel fake-quant of a weight (``axis`` = output channels)."""

    def __init__(self, channels: int, axis: int, weight_range: str = DEFAULT_WEIGHT_RANGE) -> None:
        super().__init__()
        self.axis = axis
        self.set_range(weight_range)
        self.scale = nn.Parameter(torch.ones(channels))
        self.register_buffer("_zp_float", torch.zeros(channels), persistent=False)
        self.register_buffer("_zp_int", torch.zeros(channels, dtype=torch.int32), persistent=False)
        self.enabled = True
        self.calibrated = False

    def set_range(self, weight_range: str) -> None:
        """``"reduced"`` ([-64, 64]) or ``"full"`` ([-128, 127]): see ``WEIGHT_RANGES``."""
        if weight_range not in WEIGHT_RANGES:
            raise ValueError(f"weight range must be one of {', '.join(WEIGHT_RANGES)}, got {weight_range!r}")
        self.weight_range = weight_range
        self.qmin, self.qmax = WEIGHT_RANGES[weight_range]

    @torch.no_grad()
    def init_from(self, weight: torch.Tensor) -> None:
        """Scale = max|w| per output channel / the range's symmetric bound (64 or 127): the
        symmetric min/max observer of a weight."""
        dims = [d for d in range(weight.ndim) if d != self.axis]
        amax = weight.detach().abs().amax(dim=dims)
        self.scale.copy_((amax / min(-self.qmin, self.qmax)).clamp(min=EPS))
        self.calibrated = True

    @torch.no_grad()
    def constrain_(self) -> None:
        self.scale.clamp_(min=EPS)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return w
        if not self.calibrated:
            raise RuntimeError("WeightFakeQuant used before calibration")
        if self.training and self.scale.requires_grad:
            grad_factor = 1.0 / math.sqrt(w.numel() / w.shape[self.axis] * self.qmax)
            return torch._fake_quantize_learnable_per_channel_affine(
                w, self.scale.clamp(min=EPS), self._zp_float, self.axis, self.qmin, self.qmax, grad_factor)
        scale = self.scale.detach()
        lo, hi = WEIGHT_RANGES["full"]
        if (self.qmin, self.qmax) != (lo, hi):
            # The ONNX exporter maps only the int8 type's own range to QuantizeLinear: clamp to the
            # reduced range first (same integers; exports as a constant-folded Clip before Q/DQ).
            shape = [1] * w.ndim
            shape[self.axis] = -1
            s = scale.reshape(shape)
            w = torch.clamp(w, s * self.qmin, s * self.qmax)
        return torch.fake_quantize_per_channel_affine(w, scale, self._zp_int, self.axis, lo, hi)

    def extra_repr(self) -> str:
        return (f"int8 symmetric per-channel [{self.qmin}, {self.qmax}], axis={self.axis}, channels={self.scale.numel()}, "
                f"enabled={self.enabled}")
