"""The judge's networks: OpenFWI's InversionNet sizes and shapes, the time-decimation rule."""

import pytest
import torch

from ubdiff_onnx.errors import UserError
from ubdiff_onnx.models.inversionnet import InversionNet, JudgeConfig, VelocityFeatureNet, count_parameters


def test_full_width_is_openfwis_inversionnet():
    # lanl/OpenFWI network.py InversionNet(): 24,409,123 parameters (dim1..5 = 32..512).
    assert count_parameters(InversionNet(JudgeConfig(width=1.0, time_decimation=1))) == 24_409_123


@pytest.mark.parametrize("d", [1, 2, 4, 8])
def test_every_decimation_keeps_openfwis_later_shapes(d):
    net = InversionNet(JudgeConfig(width=0.125, time_decimation=d)).eval()
    x = net.decimate(torch.randn(2, 5, 1000, 70))
    assert x.shape == (2, 5, -(-1000 // d), 70)
    # After the time-strided blocks (the first seven), every decimation sees OpenFWI's (63, 70) at full rate.
    h = net.encoder[:7](x)
    assert h.shape[-2:] == (63, 70)
    with torch.no_grad():
        y = net(x)
        f = net.features(x)
    assert y.shape == (2, 1, 70, 70) and float(y.abs().max()) <= 1.0
    assert f.shape == (2, net.cfg.bottleneck_dim)


def test_velocity_feature_net_shapes():
    cfg = JudgeConfig(feature_dim=16, feature_width=0.25)
    net = VelocityFeatureNet(cfg).eval()
    v = torch.rand(3, 1, 70, 70) * 2 - 1
    with torch.no_grad():
        assert net(v).shape == (3, 1, 70, 70)
        f = net.features(v)
    assert f.shape == (3, 16) and float(f.abs().max()) <= 1.0


def test_bad_sizes_are_refused():
    with pytest.raises(UserError, match="--time-decimation"):
        JudgeConfig(time_decimation=3)
    with pytest.raises(UserError, match="--width"):
        JudgeConfig(width=0)
