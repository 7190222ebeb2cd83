"""Forward modelling checked against physics (exact 2-D solutions) and against OpenFWI's own scheme."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ubdiff_onnx.data.forward import OPENFWI_SURVEY, Survey, forward_model
from ubdiff_onnx.errors import UserError

DT, DX, PEAK = 1e-3, 10.0, 73
trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 has only trapz


def ricker(t: np.ndarray, f: float = 15.0, t0: float = PEAK * DT) -> np.ndarray:
    a = (math.pi * f * (t - t0)) ** 2
    return (1 - 2 * a) * np.exp(-a)


def exact_2d_trace(r: float, v: float, nt: int = 1000) -> np.ndarray:
    """Pressure at distance r from a point source p += (v·dt)²·w in a uniform 2-D medium.

    The scheme's source is dx²·w(t)·δ(x) in (1/v²)p_tt − ∇²p, whose solution is dx²·(w ∗ G) with
    G = H(t − r/v) / (2π√(t² − r²/v²)); substituting τ = (r/v)·cosh(u) removes the singularity.
    """
    a = r / v
    out = np.zeros(nt)
    for n in range(nt):
        t = n * DT
        if t > a:
            u = np.linspace(0.0, np.arccosh(t / a), 2001)
            out[n] = trapezoid(ricker(t - a * np.cosh(u)), u)
    return DX * DX / (2 * np.pi) * out


@pytest.fixture(scope="module")
def simple_models() -> np.ndarray:
    """uniform 3000 m/s; 2000 over 4000 m/s with the interface at 345 m; uniform 2000 m/s."""
    v = np.zeros((3, 1, 70, 70), np.float32)
    v[0] = 3000
    v[1] = 2000
    v[1, :, 35:] = 4000
    v[2] = 2000
    return forward_model(v)


def test_output_shape_and_dtype(simple_models):
    assert simple_models.shape == (3, 5, 1000, 70) and simple_models.dtype == np.float32


def test_direct_wave_matches_the_exact_2d_solution(simple_models):
    trace = simple_models[0, 0, :, 69]  # shot at x=0, receiver at x=690 m
    exact = exact_2d_trace(690.0, 3000.0)
    # kinematics: the wavelet peak (sample 73) plus 690 m / 3000 m/s = 230 samples, plus the 2-D tail
    assert abs(int(trace.argmax()) - (PEAK + 230)) <= 8
    # OpenFWI injects w[n] into p[n] (one step early): its traces lead the exact solution by 1 sample
    assert abs(int(trace.argmax()) - int(exact.argmax())) <= 2
    assert trace.max() == pytest.approx(exact.max(), rel=0.02)
    assert np.corrcoef(trace[:-1], exact[1:])[0, 1] > 0.99


def test_direct_wave_moveout_gives_the_velocity(simple_models):
    cols = np.arange(20, 70)
    peaks = np.array([np.abs(simple_models[0, 0, :, c]).argmax() for c in cols])
    slowness = np.polyfit(cols * DX, peaks * DT, 1)[0]
    assert 1 / slowness == pytest.approx(3000, rel=0.01)


def test_reflection_time_from_layer_depth(simple_models):
    # subtracting the uniform-2000 record leaves only the reflection off the interface at 345 m
    refl = simple_models[1, 2] - simple_models[2, 2]  # shot at x=340 m
    depth = 345.0 - 10.0  # below the source/receiver depth
    for col in (34, 69):
        offset = abs(col - 34) * DX
        two_way = 2 * math.hypot(depth, offset / 2) / 2000.0
        expected = PEAK + round(two_way / DT)  # ~408 samples at zero offset
        assert abs(int(np.abs(refl[:, col]).argmax()) - expected) <= 8, col
    # zero offset: image source at 2·335 m, reflection coefficient (4000-2000)/(4000+2000)
    exact = exact_2d_trace(2 * depth, 2000.0) / 3
    assert abs(int(refl[:, 34].argmax()) - int(exact.argmax())) <= 2
    assert refl[:, 34].max() == pytest.approx(exact.max(), rel=0.1)


def _openfwi_scheme(v: np.ndarray, survey: Survey, nbc: int = 120) -> np.ndarray:
    """Independent implementation of the update OpenFWI used (2nd order in time, 4th in space,
    quadratic damping sponge of nbc cells, source p += (v·dt)²·w[n] after the update, p recorded)."""
    w = ricker(np.arange(survey.nt) * DT)
    vp = np.pad(v.astype(np.float64), nbc, mode="edge")
    width = (nbc - 1) * DX
    ramp = 3.0 * v.min() * np.log(1e7) / (2.0 * width) * (np.arange(nbc) * DX / width) ** 2
    damp = np.zeros_like(vp)
    damp[:nbc, :], damp[-nbc:, :] = ramp[::-1, None], ramp[:, None]
    damp[:, :nbc], damp[:, -nbc:] = ramp[None, ::-1], ramp[None, :]
    alpha = (vp * DT / DX) ** 2
    f32 = lambda a: torch.from_numpy(a.astype(np.float32))  # noqa: E731
    alpha_t, c1, c0, src = f32(alpha), f32(2 - 5 * alpha - damp * DT), f32(1 - damp * DT), f32((vp * DT) ** 2)
    z, xs = nbc + survey.depth_row, [nbc + c for c in survey.source_columns]
    shape = (len(xs), vp.shape[0] + 4, vp.shape[1] + 4)  # 2-cell zero halo for the 5-point stencil
    p_old, p = torch.zeros(shape), torch.zeros(shape)
    out = np.zeros((len(xs), survey.nt, v.shape[1]), np.float32)
    c = (slice(None), slice(2, -2), slice(2, -2))
    for n in range(survey.nt):
        near = p[:, 1:-3, 2:-2] + p[:, 3:-1, 2:-2] + p[:, 2:-2, 1:-3] + p[:, 2:-2, 3:-1]
        far = p[:, :-4, 2:-2] + p[:, 4:, 2:-2] + p[:, 2:-2, :-4] + p[:, 2:-2, 4:]
        p_new = torch.zeros(shape)
        p_new[c] = c1 * p[c] - c0 * p_old[c] + alpha_t * (4 / 3 * near - 1 / 12 * far)
        for k, x in enumerate(xs):
            p_new[k, z + 2, x + 2] += src[z, x] * w[n]
        out[:, n] = p_new[:, z + 2, nbc + 2 : nbc + 2 + v.shape[1]].numpy()
        p_old, p = p, p_new
    return out


def test_matches_openfwi_finite_difference_scheme():
    survey = Survey(nt=400, source_columns=(34,))  # early times only: both boundaries are quiet
    v = np.full((70, 70), 2200.0, np.float32)
    v[30:] = 3100.0
    v[52:, 20:] = 4200.0
    ours = forward_model(v, survey)[0]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ref = _openfwi_scheme(v, survey)
    finally:
        torch.set_num_threads(threads)
    assert np.sqrt(np.mean((ours - ref) ** 2) / np.mean(ref**2)) < 0.01  # sign and one-sample shift right


def test_torch_input_is_differentiable():
    v = torch.full((1, 1, 70, 70), 2500.0, requires_grad=True)
    s = forward_model(v, Survey(nt=200, source_columns=(34,)))
    assert isinstance(s, torch.Tensor) and s.shape == (1, 1, 200, 70)
    s.square().sum().backward()
    assert v.grad is not None and torch.isfinite(v.grad).all()


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.full((50, 70), 2000.0), "70×70"),
        (np.full((2, 2, 70, 70), 2000.0), "expected shape"),
        (np.full((70, 70), np.nan), "NaN"),
        (np.zeros((70, 70)), "positive"),
        (np.full((70, 70), 0.5), "normalised or km/s"),
    ],
)
def test_bad_velocity_is_a_user_error(bad, match):
    with pytest.raises(UserError, match=match):
        forward_model(bad)


def test_survey_defaults_are_openfwi():
    s = OPENFWI_SURVEY
    assert (s.nz, s.nx, s.dx, s.dt, s.nt, s.freq, s.peak_sample) == (70, 70, 10.0, 1e-3, 1000, 15.0, 73)
    assert s.source_columns == (0, 17, 34, 52, 69) and s.receiver_columns == tuple(range(70)) and s.depth_row == 1
    assert s.seismic_shape == (5, 1000, 70)
