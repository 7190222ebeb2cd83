"""The ConvTranspose → (Linear | Conv + DepthToSpace) rewrites and BatchNorm folding are exact."""

import pytest
import torch
from torch import nn

from ubdiff_onnx.config import preset
from ubdiff_onnx.conversion.export_qdq import int8_ready_copy
from ubdiff_onnx.conversion.rewrite import PointConvTranspose, SubPixelConvTranspose, fold_batchnorm, rewrite_velocity_decoder
from ubdiff_onnx.models.ubdiff import UBDiff


@pytest.mark.parametrize("cin,cout,h,w", [(3, 5, 4, 4), (16, 8, 5, 7), (1, 1, 1, 1)])
def test_subpixel_rewrite_is_exact(cin, cout, h, w):
    torch.manual_seed(0)
    ct = nn.ConvTranspose2d(cin, cout, 4, 2, 1)
    x = torch.randn(2, cin, h, w)
    with torch.no_grad():
        assert torch.allclose(SubPixelConvTranspose(ct)(x), ct(x), atol=1e-6)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_point_rewrite_is_exact_on_1x1(k):
    torch.manual_seed(1)
    ct = nn.ConvTranspose2d(7, 4, k, 1, 0)
    x = torch.randn(3, 7, 1, 1)
    with torch.no_grad():
        assert torch.allclose(PointConvTranspose(ct)(x), ct(x), atol=1e-6)


def test_fold_batchnorm_is_exact_for_conv_convtranspose_and_linear():
    torch.manual_seed(2)
    for layer, x in ((nn.Conv2d(4, 6, 3, padding=1), torch.randn(2, 4, 5, 5)),
                     (nn.ConvTranspose2d(4, 6, 4, 2, 1), torch.randn(2, 4, 5, 5)),
                     (nn.Linear(4, 6), torch.randn(2, 4))):
        bn = nn.BatchNorm2d(6).eval()
        bn.running_mean.uniform_(-1, 1); bn.running_var.uniform_(0.5, 2); bn.weight.data.uniform_(0.5, 2); bn.bias.data.uniform_(-1, 1)
        with torch.no_grad():
            y = layer(x)
            ref = bn(y if y.ndim == 4 else y[:, :, None, None]).reshape(y.shape)
            fold_batchnorm(layer, bn)
            assert torch.allclose(layer(x), ref, atol=1e-5)


@pytest.mark.parametrize("name", ["tiny", "paper"])
def test_int8_ready_model_is_exact_in_fp32(name):
    torch.manual_seed(3)
    model = UBDiff(preset(name)).eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3); m.running_var.uniform_(0.5, 1.5)
    ready = int8_ready_copy(model)
    assert not any(isinstance(m, (nn.ConvTranspose2d, nn.BatchNorm2d)) for m in [*ready.velocity_decoder.modules(), *ready.velocity_projector.modules()])
    z = torch.randn(3, model.cfg.latent_dim)
    with torch.no_grad():
        assert (ready.decode_velocity(z) - model.decode_velocity(z)).abs().max() < 1e-5
        assert (ready.decode_seismic(z) - model.decode_seismic(z)).abs().max() < 1e-5
    assert rewrite_velocity_decoder(UBDiff(preset(name)).velocity_decoder) == 5
