"""Our torch model against outputs computed by the ORIGINAL UB-Diff code (tests/fixtures/parity)."""

import numpy as np
import pytest
import torch

from tests.conftest import max_abs

TOL = 1e-5


@pytest.fixture(scope="module")
def m(original_model):
    return original_model


def test_decode_matches_original(m, parity_original):
    d = parity_original
    z = torch.from_numpy(d["z"])
    with torch.no_grad():
        v, s = m.decode(z)
        zv = m.velocity_projector(z).reshape(2, -1)
        zs = m.seismic_projector(z)
        feat = m.seismic_decoder.features(zs)
    assert v.shape == (2, 1, 70, 70) and s.shape == (2, 5, 1000, 70)
    assert max_abs(zv, d["probe_zv"]) <= TOL
    assert max_abs(zs.reshape(2, -1), d["probe_zs"]) <= TOL
    assert max_abs(feat, d["probe_vit_feat"]) <= TOL
    assert max_abs(v, d["velocity"]) <= TOL
    assert max_abs(s[:, :, ::10, ::7], d["seismic"]) <= TOL
    s64 = s.double()
    assert abs(s64.sum().item() - d["seismic_sum"]) <= 1e-6 * d["seismic_abssum"]
    assert abs(s64.abs().sum().item() - d["seismic_abssum"]) <= 1e-6 * d["seismic_abssum"]
    assert abs(s.min().item() - d["seismic_min"]) <= TOL and abs(s.max().item() - d["seismic_max"]) <= TOL


def test_encoder_matches_original(m, parity_original):
    with torch.no_grad():
        enc = m.encoder(torch.from_numpy(parity_original["velocity_in"]))
    assert max_abs(enc, parity_original["encoded"]) <= TOL


@pytest.mark.parametrize("t", [0, 31, 200, 255])
def test_unet_matches_original(m, parity_original, t):
    x = torch.from_numpy(parity_original["unet_x"])
    with torch.no_grad():
        out = m.unet(x, torch.full((2,), t, dtype=torch.long))
    assert max_abs(out, parity_original[f"unet_t{t}"]) <= TOL


def test_unet_depends_on_timestep(m, parity_original):
    x = torch.from_numpy(parity_original["unet_x"])
    with torch.no_grad():
        a = m.unet(x, torch.full((2,), 10, dtype=torch.long))
        b = m.unet(x, torch.full((2,), 200, dtype=torch.long))
    assert max_abs(a, b) > 1e-3


def test_schedule_tables_match_original(m, parity_original):
    for name in ("betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
                 "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
                 "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2", "loss_weight"):
        ours = getattr(m.diffusion, name).numpy()
        ref = parity_original[f"sched_{name}"]
        assert np.allclose(ours, ref, rtol=1e-6, atol=1e-6), name


@pytest.mark.parametrize("t", [200, 0])
def test_posterior_matches_original(m, parity_original, t):
    d = parity_original
    x = torch.from_numpy(d["unet_x"])
    with torch.no_grad():
        mean, logvar, x0 = m.diffusion.p_mean_variance(m.unet, x, torch.full((2,), t, dtype=torch.long))
    assert max_abs(mean, d[f"pmean_t{t}"]) <= TOL
    assert max_abs(x0, d[f"px0_t{t}"]) <= TOL
    assert max_abs(logvar.reshape(-1), d[f"plogvar_t{t}"]) <= TOL


def _traj_model(m, traj):
    def model(x, t):
        traj.append(x.clone())
        return m.unet(x, t)
    return model


@pytest.mark.parametrize("steps,key", [(16, "ddim"), (10, "ddim10")])
def test_ddim_matches_original(m, parity_original, steps, key):
    from ubdiff_onnx.runtime.schedule import ddim_timesteps

    d = parity_original
    assert [t for t, _ in ddim_timesteps(256, steps)] == d[f"{key}_times"].tolist()
    traj = []
    x0 = m.diffusion.ddim_sample(_traj_model(m, traj), torch.from_numpy(d["ddim_xT"]), steps)
    traj.append(x0)
    assert max_abs(torch.stack(traj), d[f"{key}_traj"]) <= TOL
    assert max_abs(x0, d[f"{key}_x0"]) <= TOL
    if key == "ddim":
        with torch.no_grad():
            v, _ = m.decode(x0)
        assert max_abs(v, d["ddim_velocity"]) <= TOL


def test_ddpm_matches_original(m, parity_original):
    d = parity_original
    noise = torch.from_numpy(d["ddpm_noise"])
    traj = []
    x0 = m.diffusion.ddpm_sample(_traj_model(m, traj), torch.from_numpy(d["ddpm_xT"]), noises=(noise[t] for t in range(255, 0, -1)))
    traj.append(x0)
    assert max_abs(torch.stack(traj), d["ddpm_traj"]) <= TOL
    with torch.no_grad():
        v, _ = m.decode(x0)
    assert max_abs(v, d["ddpm_velocity"]) <= TOL
