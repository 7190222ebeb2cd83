import pytest
import torch

from ubdiff_onnx.config import PRESETS, UBDiffConfig, preset
from ubdiff_onnx.models.ubdiff import UBDiff, count_parameters


def test_paper_preset_has_the_original_parameter_count():
    assert count_parameters(UBDiff(preset("paper"))) == 263_035_868


@pytest.mark.parametrize("name", PRESETS)
def test_config_round_trips_through_dict(name):
    cfg = preset(name)
    assert UBDiffConfig.from_dict(cfg.to_dict()) == cfg


def test_unknown_preset_and_bad_config_are_rejected():
    with pytest.raises(ValueError, match="unknown preset"):
        preset("huge")
    with pytest.raises(ValueError, match="seismic_token"):
        UBDiffConfig(seismic_token="middle")
    with pytest.raises(ValueError, match="divisible"):
        UBDiffConfig(latent_dim=30)


def test_tiny_preset_has_the_real_output_shapes():
    torch.manual_seed(0)
    m = UBDiff(preset("tiny")).eval()
    L = m.cfg.latent_dim
    with torch.no_grad():
        enc = m.encode(torch.rand(3, 1, 70, 70) * 2 - 1)
        assert enc.shape == (3, L)
        v, s = m.decode(enc)
        assert v.shape == (3, 1, 70, 70) and s.shape == (3, 5, 1000, 70)
        assert v.abs().max() <= 1.0
        out = m.unet(torch.randn(3, 1, L), torch.tensor([0, 100, 255]))
        assert out.shape == (3, 1, L)


def test_tiny_unet_output_depends_on_t():
    torch.manual_seed(0)
    m = UBDiff(preset("tiny")).eval()
    x = torch.randn(2, 1, m.cfg.latent_dim)
    with torch.no_grad():
        a = m.unet(x, torch.tensor([3, 3]))
        b = m.unet(x, torch.tensor([250, 250]))
    assert (a - b).abs().max() > 1e-4


@pytest.mark.parametrize("objective", ["pred_v", "pred_noise", "pred_x0"])
def test_diffusion_loss_and_samplers_run_for_each_objective(objective):
    from ubdiff_onnx.models.diffusion import GaussianDiffusion

    torch.manual_seed(0)
    cfg = preset("tiny").replace(objective=objective)
    m = UBDiff(cfg)
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(4, 1, cfg.latent_dim) * 2 - 1
    loss = m.diffusion.loss(m.unet, x0, generator=g)
    loss.backward()
    assert torch.isfinite(loss) and m.unet.init_conv.weight.grad is not None
    assert isinstance(m.diffusion, GaussianDiffusion)
    xT = torch.randn(2, 1, cfg.latent_dim, generator=g)
    a = m.sample_latents(xT, 8, "ddim", eta=0.5, generator=torch.Generator().manual_seed(5))
    b = m.sample_latents(xT, 8, "ddim", eta=0.5, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)  # same seed, same sample
    assert a.abs().max() <= 1.0 + 1e-6
