"""BatchNorm folding is exact; the calibrated fake-quant model stays close to its float twin; the
checkpoint form (float keys + ``qat`` scales) restores the same model."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from tests.qat.conftest import latents
from ubdiff_onnx import qat
from ubdiff_onnx.config import preset
from ubdiff_onnx.models.ubdiff import UBDiff
from ubdiff_onnx.qat.fold import fold_bn_
from ubdiff_onnx.training.phases import freeze_except, set_modes


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _outputs(model: UBDiff, seed: int = 7):
    g = torch.Generator().manual_seed(seed)
    z = latents(8, g)
    x, t = torch.randn(8, 1, 32, generator=g), torch.randint(0, 256, (8,), generator=g)
    with torch.no_grad():
        v, s = model.decode(z)
        return v, s, model.unet(x, t)


@pytest.mark.parametrize("layer", [nn.Conv2d(3, 6, 3, padding=1), nn.ConvTranspose2d(3, 6, 4, 2, 1), nn.Linear(3, 6)])
def test_fold_bn_is_exact(layer):
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(6)
    bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2), bn.weight.data.uniform_(0.5, 1.5), bn.bias.data.uniform_(-1, 1)
    bn.eval()
    x = torch.randn(2, 3, 5, 5) if not isinstance(layer, nn.Linear) else torch.randn(2, 3)

    def run(lin, norm):
        y = lin(x)
        return norm(y if y.ndim == 4 else y[:, :, None, None])

    with torch.no_grad():
        before = run(layer, bn)
        fold_bn_(layer, bn)
        after = run(layer, nn.Identity())
    assert torch.allclose(before, after, atol=1e-5)


def test_quantizers_off_equals_float_model(float_model):
    """Folding and the quantized forwards (attention included) change nothing but the rounding."""
    model = copy.deepcopy(float_model)
    qat.prepare_qat_(model, ["velocity", "seismic", "unet"])
    qat.set_quant_enabled(model, False)
    for got, want in zip(_outputs(model.eval()), _outputs(float_model)):
        assert torch.allclose(got, want, atol=2e-5)


def test_calibrated_qat_model_matches_float_twin(qat_pair):
    """Stated tolerance (tiny preset, random init, 6 calibration batches of 16, fresh inputs): relative
    RMS error ≤ 2 % velocity, ≤ 5 % seismic, ≤ 8 % U-Net step output (measured 0.4 %, 2.9 %, 5.3 %)."""
    float_model, model = qat_pair
    v, s, u = _outputs(model)
    fv, fs, fu = _outputs(float_model)
    assert _rel(v, fv) <= 0.02 and _rel(s, fs) <= 0.05 and _rel(u, fu) <= 0.08
    assert _rel(u, fu) > 0  # really quantized


def test_checkpoint_form_restores_the_same_model(qat_pair):
    float_model, model = qat_pair
    sd, state = qat.float_state_dict(model), qat.qat_state(model)
    assert set(sd) == set(float_model.state_dict())  # same module tree / key layout
    assert state["components"] == ["velocity", "seismic", "unet"]
    assert all(e["kind"] in ("activation", "weight") for e in state["quantizers"].values())
    plain = UBDiff(preset("tiny"))
    plain.load_state_dict(sd, strict=True)  # a float model loads the folded weights...
    twin = copy.deepcopy(model)
    qat.set_quant_enabled(twin, False)
    for got, want in zip(_outputs(plain.eval()), _outputs(twin)):
        assert torch.allclose(got, want, atol=2e-5)  # ...and is the folded float twin
    qat.restore_qat_(plain, state)
    for got, want in zip(_outputs(plain.eval()), _outputs(model)):
        assert torch.equal(got, want)


def test_frozen_path_keeps_its_statistics_while_the_other_trains(float_model):
    """The refactor's bug: the frozen path's BatchNorm and observers kept updating. Here the seismic
    path is frozen and in eval mode while the velocity path trains (both run forward)."""
    model = copy.deepcopy(float_model)
    qat.prepare_qat_(model, ["velocity"])
    qat.begin_calibration(model.velocity_decoder), qat.begin_calibration(model.velocity_projector)
    with torch.no_grad():
        model.decode_velocity(latents(16, torch.Generator().manual_seed(3)))
    qat.end_calibration(model)
    trainable = ("velocity_projector", "velocity_decoder")
    params = freeze_except(model, trainable)
    set_modes(model, trainable, True)
    frozen_before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("seismic_")}
    opt = torch.optim.SGD(params, lr=0.1)
    v, s = model.decode(latents(16, torch.Generator().manual_seed(4)))
    (v.square().mean() + s.square().mean()).backward()
    opt.step()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in frozen_before.items())
    assert not model.seismic_projector.training and model.velocity_decoder.training
    assert any(p.grad is not None for p in qat.quant_parameters(model.velocity_decoder))
