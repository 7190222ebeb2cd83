"""The few-step solvers reproduce diffusers' DPMSolverMultistepScheduler / UniPCMultistepScheduler
step for step (same β table, same model function), and refuse bad settings."""

import numpy as np
import pytest

from ubdiff_onnx.runtime.multistep import DPMSolverPlusPlusScheduler, UniPCScheduler, spaced_timesteps
from ubdiff_onnx.runtime.schedule import make_schedule

diffusers = pytest.importorskip("diffusers")
torch = pytest.importorskip("torch")

L = 16
PREDICTION = {"pred_v": "v_prediction", "pred_noise": "epsilon", "pred_x0": "sample"}
SOLVERS = {"dpmpp2m": (DPMSolverPlusPlusScheduler, 2), "dpmpp3m": (DPMSolverPlusPlusScheduler, 3), "unipc": (UniPCScheduler, 2), "unipc3": (UniPCScheduler, 3)}


def _net(seed=0):
    w = np.random.default_rng(seed).standard_normal((L, L)).astype(np.float32) * 0.3
    return lambda x, t: np.tanh(x @ w + np.float32(t / 256.0)).astype(np.float32)


def _pair(solver, objective, spacing):
    tables = make_schedule(objective=objective)
    cls, order = SOLVERS[solver]
    cfg = dict(num_train_timesteps=256, trained_betas=tables.betas, prediction_type=PREDICTION[objective],
               timestep_spacing=spacing, solver_order=order, lower_order_final=True)
    if cls is DPMSolverPlusPlusScheduler:
        ref = diffusers.DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", **cfg)
    else:
        ref = diffusers.UniPCMultistepScheduler(**cfg)
    return cls(tables, objective, order, spacing, clip_x0=False), ref


def _run_both(solver, objective, spacing, steps):
    ours, ref = _pair(solver, objective, spacing)
    ours.set_timesteps(steps)
    ref.set_timesteps(steps)
    assert list(ours.timesteps) == [int(t) for t in ref.timesteps]
    net = _net()
    x_T = np.random.default_rng(1).standard_normal((3, 1, L)).astype(np.float32)
    x, xr = x_T.copy(), torch.from_numpy(x_T.copy())
    for t in ours.timesteps:
        x = ours.step(net(x, int(t)), int(t), x)
    for t in ref.timesteps:
        xr = ref.step(torch.from_numpy(net(xr.numpy(), int(t))), t, xr).prev_sample
    return x, xr.numpy()


@pytest.mark.parametrize("spacing", ["linspace", "leading", "trailing"])
@pytest.mark.parametrize("steps", [3, 8, 25])
@pytest.mark.parametrize("solver", list(SOLVERS))
def test_matches_diffusers_pred_v(solver, spacing, steps):
    x, ref = _run_both(solver, "pred_v", spacing, steps)
    assert np.linalg.norm(x - ref) / np.linalg.norm(ref) <= 1e-5


@pytest.mark.parametrize("objective", ["pred_noise", "pred_x0"])
@pytest.mark.parametrize("solver", list(SOLVERS))
def test_matches_diffusers_other_objectives(solver, objective):
    # diffusers builds ᾱ with a float32 cumprod, we from float64: pred_noise divides by α at t=255
    # (≈0.005) and so shows the biggest difference (7e-6 measured), still within 1e-5.
    x, ref = _run_both(solver, objective, "linspace", 10)
    assert np.linalg.norm(x - ref) / np.linalg.norm(ref) <= 1e-5


def test_clip_keeps_x0_in_range_and_batches_are_independent():
    tables = make_schedule()
    net = lambda x, t: (5 * np.sin(x + t)).astype(np.float32)  # noqa: E731  a wild model: x̂0 far outside [-1,1]
    x_T = np.random.default_rng(2).standard_normal((4, 1, L)).astype(np.float32)
    for cls in (DPMSolverPlusPlusScheduler, UniPCScheduler):
        sch = cls(tables, "pred_v", 2, "linspace", clip_x0=True)
        sch.set_timesteps(6)
        outs = []
        for _ in range(2):  # the same scheduler object, reused: history resets at the first timestep
            x = x_T.copy()
            for t in sch.timesteps:
                x = sch.step(net(x, int(t)), int(t), x)
            outs.append(x)
        assert np.array_equal(outs[0], outs[1])
        assert np.abs(outs[0]).max() <= 1.0  # the last step returns the clipped x̂0


def test_bad_settings():
    tables = make_schedule()
    with pytest.raises(ValueError, match="too few"):
        DPMSolverPlusPlusScheduler(tables, order=3).set_timesteps(2)
    with pytest.raises(ValueError, match="timestep-spacing"):
        UniPCScheduler(tables, spacing="karras")
    with pytest.raises(ValueError, match="repeats timesteps; use at most 255"):
        spaced_timesteps(256, 256, "leading")
    with pytest.raises(ValueError, match="not one of"):
        sch = UniPCScheduler(tables)
        sch.step(np.zeros((1, 1, L), np.float32), 3, np.zeros((1, 1, L), np.float32))
    assert list(spaced_timesteps(256, 4, "trailing")) == [255, 191, 127, 63]
