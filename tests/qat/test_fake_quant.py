"""The quantizers: observer → scale, LSQ gradients, eval numerics, Python-bool state."""

from __future__ import annotations

import pytest
import torch

from ubdiff_onnx.qat import ActFakeQuant, QConvTranspose2d, WeightFakeQuant
from ubdiff_onnx.qat.modules import quantize_layer_


def test_activation_observer_sets_uint8_affine_qparams():
    q = ActFakeQuant()
    q.start_observing()
    x = torch.linspace(-1.0, 3.0, 101)
    assert torch.equal(q(x), x)  # observing passes float through
    q.finish_observing()
    assert q.scale.item() == torch.tensor(4.0 / 255).item() and int(q.zero_point) == 64
    q.eval()
    y = q(x)
    assert (y - x).abs().max() <= q.scale.item() / 2 + 1e-6
    ref = torch.fake_quantize_per_tensor_affine(x, 4.0 / 255, 64, 0, 255)
    assert torch.equal(y, ref)


def test_state_is_python_bools_only():
    q = ActFakeQuant()
    for flag in ("enabled", "observing", "calibrated"):
        assert isinstance(getattr(q, flag), bool)
    assert isinstance(WeightFakeQuant(4, 0).calibrated, bool)


def test_lsq_gives_the_scale_a_gradient_and_matches_eval_forward():
    q = ActFakeQuant()
    q.start_observing()
    x = torch.randn(4, 16)
    q(x)
    q.finish_observing()
    q.train()
    y = q(x)
    y.square().sum().backward()
    assert q.scale.grad is not None and q.scale.grad.abs().item() > 0
    q.eval()
    assert torch.allclose(q(x), y.detach(), atol=1e-6)


@pytest.mark.parametrize("weight_range,bound", [("reduced", 64), ("full", 127)])
def test_weights_are_int8_symmetric_per_output_channel_axis_1_for_conv_transpose(weight_range, bound):
    layer = torch.nn.ConvTranspose2d(3, 5, 4, 2, 1)
    quantize_layer_(layer, weight_range)
    assert isinstance(layer, QConvTranspose2d) and layer.weight_quant.axis == 1
    layer.weight_quant.init_from(layer.weight)
    amax = layer.weight.detach().abs().amax(dim=(0, 2, 3))
    assert torch.allclose(layer.weight_quant.scale.detach(), amax / bound)
    layer.eval()
    wq = layer.weight_quant(layer.weight)
    steps = (wq / layer.weight_quant.scale.detach()[None, :, None, None])
    assert torch.allclose(steps, steps.round(), atol=1e-4) and steps.round().abs().max() == bound
    assert ((wq - layer.weight).abs() <= layer.weight_quant.scale.detach()[None, :, None, None] / 2 + 1e-7).all()


def test_reduced_range_eval_forward_is_the_7bit_fake_quant():
    """The eval path clamps to [-64·s, 64·s] and fake-quantizes in the int8 type's range (what the
    ONNX exporter maps to QuantizeLinear): the same values as a [-64, 64] fake-quant, LSQ's range."""
    q = WeightFakeQuant(6, 0)
    w = torch.randn(6, 5, 3, generator=torch.Generator().manual_seed(3)) * 4
    q.init_from(w[:, :2])  # scales from part of the tensor: the rest clips
    q.eval()
    s = q.scale.detach()
    ref = torch.fake_quantize_per_channel_affine(w, s, torch.zeros(6, dtype=torch.int32), 0, -64, 64)
    got = q(w)
    assert torch.equal(got, ref) and (got / s[:, None, None]).round().abs().max() == 64
