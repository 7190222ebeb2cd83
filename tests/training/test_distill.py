"""Progressive distillation: the target construction, the halving grids, and the ``distill`` stage
(rounds, teacher hand-off, QAT of the student, resume)."""

from __future__ import annotations

import os
import shutil
import signal

import numpy as np
import pytest
import torch

from tests.training.conftest import short_options
from ubdiff_onnx.checkpoints.format import load_checkpoint
from ubdiff_onnx.errors import UserError
from ubdiff_onnx.models.diffusion import GaussianDiffusion
from ubdiff_onnx.runtime.schedule import cosine_betas, ddim_timesteps, halving_timesteps, make_schedule
from ubdiff_onnx.runtime.schedulers import DDIMScheduler
from ubdiff_onnx.training import Overrides, train
from ubdiff_onnx.training.config import distill_stage, phase_defaults, phases_of, stages_for
from ubdiff_onnx.training.distill import distillation_target, round_times
from ubdiff_onnx.training.interrupt import TrainingInterrupted
from ubdiff_onnx.training.loop import StageRunner

QUIET = dict(say=lambda msg: None)
T = 256


def _teacher(seed: int = 0):
    """A fixed smooth denoiser of (x, t): any function will do for the algebra, as long as it
    depends on both (a swapped t′/t″ must show)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(8, 8, generator=g) / 8 ** 0.5
    b = torch.randn(8, generator=g)

    def f(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return 0.4 * torch.tanh(x @ w + b * (t.to(x.dtype)[:, None, None] / T)) + 0.3 * x
    return f


def _z_t(diffusion, t, seed=1):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(len(t), 1, 8, generator=g) * 1.6 - 0.8
    return diffusion.q_sample(x0, t, torch.randn(x0.shape, generator=g))


@pytest.mark.parametrize("n", [1, 4, 64])
def test_one_student_step_from_the_target_is_the_teachers_two(n):
    """Feeding the v target to one DDIM step (torch and the numpy runtime, x̂0 unclipped so the
    algebra is exact) lands where the teacher's t → t′ → t″ lands; with t′ and t″ swapped it does not."""
    diffusion, teacher = GaussianDiffusion(T), _teacher()
    t = torch.tensor(halving_timesteps(T, n)).repeat_interleave(2)
    z_t = _z_t(diffusion, t)
    target = distillation_target(diffusion, teacher, z_t, t, n)
    t_mid, t_next = round_times(t, n, T)
    assert torch.equal(t_next, target["t_next"]) and torch.all(t_mid - t_next == T // (2 * n))
    mid = diffusion.ddim_step(teacher(z_t, t), z_t, t, t_mid)
    two = diffusion.ddim_step(teacher(mid, t_mid), mid, t_mid, t_next)
    one = diffusion.ddim_step(target["v"], z_t, t, t_next, clip=False)
    torch.testing.assert_close(one, two, rtol=1e-4, atol=2e-5)

    sch = DDIMScheduler(make_schedule("cosine", T), "pred_v", clip_x0=False)
    sch.set_grid(halving_timesteps(T, n))
    for i in range(len(t)):
        got = sch.step(target["v"][i:i + 1].numpy(), int(t[i]), z_t[i:i + 1].numpy())
        np.testing.assert_allclose(got, two[i:i + 1].numpy(), rtol=1e-4, atol=2e-5)

    keep = t_next >= 0  # the swapped port, t → t″ → t′, needs a real timestep t″
    if keep.any():
        t, z_t, t_mid, t_next = t[keep], z_t[keep], t_mid[keep], t_next[keep]
        wrong_mid = diffusion.ddim_step(teacher(z_t, t), z_t, t, t_next)
        wrong = diffusion.ddim_step(teacher(wrong_mid, t_next), wrong_mid, t_next, t_mid)
        assert (wrong - two[keep]).abs().amax(dim=(1, 2)).min() > 1e-3


def test_x0_and_v_targets_against_an_independent_solve():
    """float64 from the β recipe: (x̃0, ε̃) solve z_t = α_t x0 + σ_t ε, z_t″ = α_t″ x0 + σ_t″ ε
    (the DDIM step with ε re-derived from x̂0), and ṽ = α_t ε̃ − σ_t x̃0."""
    diffusion, teacher, n = GaussianDiffusion(T), _teacher(3), 4
    t = torch.tensor(halving_timesteps(T, n))
    z_t = _z_t(diffusion, t, seed=5)
    got = distillation_target(diffusion, teacher, z_t, t, n)
    ac = np.cumprod(1.0 - cosine_betas(T))
    z, z2 = z_t.double().numpy(), got["z_next"].double().numpy()
    for i, ti in enumerate(t.tolist()):
        tn = ti - T // n
        a, s = np.sqrt(ac[ti]), np.sqrt(1 - ac[ti])
        an, sn = (np.sqrt(ac[tn]), np.sqrt(1 - ac[tn])) if tn >= 0 else (1.0, 0.0)
        rhs = np.stack([z[i].ravel(), z2[i].ravel()])
        x0, eps = np.linalg.solve(np.array([[a, s], [an, sn]]), rhs)
        np.testing.assert_allclose(got["x0"][i].ravel().numpy(), x0, rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(got["v"][i].ravel().numpy(), a * eps - s * x0, rtol=1e-3, atol=1e-4)


def test_halving_grids_are_the_original_ddim_times_and_nest():
    assert halving_timesteps(T, 4) == [255, 191, 127, 63]
    for k in range(8):
        n = 2**k
        grid = halving_timesteps(T, n)
        assert grid == [t for t, _ in ddim_timesteps(T, n)]  # the student runs on the existing DDIM rule
        assert halving_timesteps(T, 2 * n)[::2] == grid       # each round keeps every other teacher step


def test_stage_names_rounds_and_bad_step_counts():
    assert stages_for("distill") == ("distill-4",) and stages_for("distill", 8) == ("distill-8",)
    assert phases_of("distill-4") == ("distill-128", "distill-64", "distill-32", "distill-16", "distill-8", "distill-4", "qat-distill-4")
    assert phases_of("distill-128") == ("distill-128", "qat-distill-128")
    for bad in (0, 3, 6, 256, 512):
        with pytest.raises(UserError, match=r"--student-steps: expected a power of two below T=256 \(1, 2, 4"):
            distill_stage(bad)
    with pytest.raises(UserError, match="--student-steps applies to --stage distill"):
        stages_for("diffusion", 4)
    for preset in ("tiny", "paper"):  # the next teacher is the round's EMA student
        assert phase_defaults(preset)["distill"].ema_decay


# -- the stage ----------------------------------------------------------------------------------
def _from_short_run(short_run, tmp_path):
    """A run folder holding only what distillation starts from (run.json + qat-decoders.pt)."""
    src, _ = short_run
    run = tmp_path / "run"
    run.mkdir()
    for name in ("run.json", "qat-decoders.pt"):
        shutil.copy(src / name, run / name)
    return run


def _opts(run, data, **kw):
    """Two rounds (128, 64 steps) and QAT, 2 steps each; batch 32 keeps the 1024-draw validations
    (two teacher calls each) to a few batches."""
    return short_options(run, data, stage="distill", student_steps=64, overrides=Overrides(epochs=1, steps=2, batch_size=32), **kw)


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def distilled(short_run, small_fwi, tmp_path_factory):
    run = _from_short_run(short_run, tmp_path_factory.mktemp("distill"))
    results = train(_opts(run, small_fwi), **QUIET)
    return run, results


def test_distill_writes_an_int8_student_on_the_teachers_decoders(distilled, short_run):
    run, results = distilled
    assert [r["stage"] for r in results] == ["distill-64"]
    ckpt = load_checkpoint(run / "distill-64.pt")
    src = load_checkpoint(short_run[0] / "qat-decoders.pt")
    assert ckpt.meta["stage_complete"] is True and "distill_teacher" not in ckpt.meta
    assert ckpt.meta["student"]["steps"] == 64 and ckpt.meta["student"]["timesteps"] == halving_timesteps(T, 64)
    assert ckpt.meta["student"]["sampler"] == "ddim"
    assert ckpt.qat["components"] == ["velocity", "seismic", "unet"]
    assert ckpt.qat["quantizers"].keys() >= src.qat["quantizers"].keys()
    for prefix in ("encoder.", "velocity_", "seismic_"):  # only the U-Net learns
        assert all(torch.equal(ckpt.state_dict[k], v) for k, v in src.state_dict.items() if k.startswith(prefix))
    # the float student (EMA of the last round) is kept; it started from the teacher and moved away
    assert ckpt.ema is not None and ckpt.ema.keys() == src.ema.keys() and not _equal(ckpt.ema, src.ema)
    phases = [h["phase"] for h in ckpt.meta["history"] if h["kind"] == "val"]
    assert phases[0] == "distill-128" and "distill-64" in phases and phases[-1] == "qat-distill-64"
    assert results[0]["samples"]["sample_nn"] < results[0]["samples"]["noise_nn"]


def test_distill_needs_the_qat_decoders_stage(tmp_path, small_fwi):
    with pytest.raises(UserError, match=r"qat-decoders\.pt not found: --stage distill starts from the qat-decoders stage"):
        train(_opts(tmp_path / "empty", small_fwi), **QUIET)


def test_interrupted_distillation_resumes_to_the_uninterrupted_student(distilled, short_run, small_fwi, tmp_path, monkeypatch):
    """SIGTERM in the second round (teacher = round 1's EMA student, saved with the checkpoint);
    --resume then gives exactly the uninterrupted student."""
    ref_run, _ = distilled
    run = _from_short_run(short_run, tmp_path)
    original, calls = StageRunner._step, {"n": 0}

    def step_then_signal(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:  # first step of round 2 (each round is 1 epoch × 2 steps here)
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    monkeypatch.setattr(StageRunner, "_step", step_then_signal)
    with pytest.raises(TrainingInterrupted):
        train(_opts(run, small_fwi), **QUIET)
    partial = load_checkpoint(run / "distill-64.pt")
    assert partial.meta["stage_complete"] is False and partial.meta["train_state"]["phase_index"] == 1
    assert partial.meta["distill_teacher"] is not None
    monkeypatch.undo()
    train(_opts(run, small_fwi, resume=True), **QUIET)
    ref, got = load_checkpoint(ref_run / "distill-64.pt"), load_checkpoint(run / "distill-64.pt")
    assert got.meta["stage_complete"] is True
    assert _equal(ref.state_dict, got.state_dict) and _equal(ref.ema, got.ema)


def test_overwriting_the_source_stage_is_refused_while_a_student_depends_on_it(distilled, small_fwi):
    run, _ = distilled
    with pytest.raises(UserError, match=r"later stages \(distill-64\)"):
        train(short_options(run, small_fwi, stage="qat-decoders", overwrite=True, overrides=Overrides(epochs=1, steps=1, batch_size=8)), **QUIET)
