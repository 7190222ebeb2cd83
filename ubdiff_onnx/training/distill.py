"""Progressive distillation (Salimans & Ho 2022) of the U-Net into a few-step DDIM student.

A round trains a student for N steps from a frozen teacher for 2N: on the student's grid
t_k = T-1 - k·T/N (:func:`halving_timesteps`), one student step t → t″ = t - T/N must land where
two deterministic teacher DDIM steps t → t′ = t - T/2N → t″ land. From z_t and the teacher's z_t″
the x̂0 that a single DDIM step maps onto z_t″ is

    x̃0 = (z_t″ − (σ_t″/σ_t)·z_t) / (α_t″ − (σ_t″/σ_t)·α_t),      (α, σ) = (1, 0) at t″ = -1,

and the student (v-prediction, like the teacher) learns ṽ = (α_t·z_t − x̃0)/σ_t with a plain MSE on v
(the paper's "SNR+1" weighting of the x̂0 error). The next round's teacher is this round's EMA
student, which also initialises the next student. The last round is then repeated with fake-quant
(QAT) from the EMA student, so the INT8 student is what ships; the float student stays in the
checkpoint's ``ema`` field. Student and teacher both run the original DDIM step rule (x̂0 clipped).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ubdiff_onnx.models.diffusion import Denoiser, GaussianDiffusion
from ubdiff_onnx.runtime.schedule import halving_timesteps
from ubdiff_onnx.training.config import student_steps_of
from ubdiff_onnx.training.phases import DiffusionPhase

METHOD = "progressive-distillation"


def student_record(student_steps: int, timesteps: int, teacher_steps: int | None = None) -> dict[str, Any]:
    """What a bundle's manifest says about a student (``student`` key): the only sampler, step
    count and timesteps it was trained for."""
    return {"method": METHOD, "sampler": "ddim", "steps": student_steps, "timesteps": halving_timesteps(timesteps, student_steps),
            "teacher_steps": teacher_steps or 2 * student_steps, "objective_target": "v", "clip_x0": True}


def round_times(t: torch.Tensor, student_steps: int, timesteps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(t′, t″) of the teacher's two steps from student timesteps ``t`` (t″ = -1 past the end)."""
    half = timesteps // (2 * student_steps)
    return t - half, t - 2 * half


def target_x0(diffusion: GaussianDiffusion, z_t: torch.Tensor, t: torch.Tensor, z_next: torch.Tensor, t_next: torch.Tensor) -> torch.Tensor:
    """The x̂0 whose DDIM step from (z_t, t) lands exactly on (z_next, t_next)."""
    a_t, s_t = diffusion.alpha_sigma(t, z_t.ndim)
    a_n, s_n = diffusion.alpha_sigma(t_next, z_t.ndim)
    ratio = s_n / s_t
    return (z_next - ratio * z_t) / (a_n - ratio * a_t)


def v_from_x0(diffusion: GaussianDiffusion, z_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """The v-prediction that gives x̂0 = ``x0`` at (z_t, t): x̂0 = α·z − σ·v."""
    a_t, s_t = diffusion.alpha_sigma(t, z_t.ndim)
    return (a_t * z_t - x0) / s_t


@torch.no_grad()
def distillation_target(diffusion: GaussianDiffusion, teacher: Denoiser, z_t: torch.Tensor, t: torch.Tensor,
                        student_steps: int) -> dict[str, torch.Tensor]:
    """Two teacher DDIM steps from z_t, and the student's x̂0 and v targets that do them in one."""
    t_mid, t_next = round_times(t, student_steps, diffusion.num_timesteps)
    z_mid = diffusion.ddim_step(teacher(z_t, t), z_t, t, t_mid)
    z_next = diffusion.ddim_step(teacher(z_mid, t_mid), z_mid, t_mid, t_next)
    x0 = target_x0(diffusion, z_t, t, z_next, t_next)
    return {"x0": x0, "v": v_from_x0(diffusion, z_t, t, x0), "z_next": z_next, "t_next": t_next}


def frozen_copy(unet: nn.Module, weights: dict[str, torch.Tensor]) -> nn.Module:
    """An eval-mode, gradient-free U-Net with ``weights`` (the teacher of a round)."""
    import copy

    teacher = copy.deepcopy(unet)
    teacher.load_state_dict(weights, strict=True)
    teacher.eval().requires_grad_(False)
    return teacher


class DistillPhase(DiffusionPhase):
    """One round (``distill-N``: float student with EMA) or the student's QAT (``qat-distill-N``).
    ``teacher`` is set by the loop before training (:meth:`StageRunner._begin_distill`)."""

    def __init__(self, name: str) -> None:
        quantized = name.startswith("qat-")
        super().__init__(name, quantized)
        self.student_steps = student_steps_of(name)
        self.teacher: nn.Module | None = None

    def grid(self, model) -> torch.Tensor:
        return torch.tensor(halving_timesteps(model.diffusion.num_timesteps, self.student_steps), dtype=torch.long)

    def check_steps(self, cfg) -> int:
        return self.student_steps

    def inputs(self, batch, model, gen):
        x0 = batch["x0"]
        grid = self.grid(model).to(x0.device)
        t = grid[torch.randint(0, len(grid), (x0.shape[0],), generator=gen, device=x0.device)]
        noise = torch.randn(x0.shape, generator=gen, device=x0.device, dtype=x0.dtype)
        return {"x0": x0, "t": t, "noise": noise}

    def loss(self, model, inputs):
        assert self.teacher is not None, "the loop sets the teacher before the first step"
        z_t = model.diffusion.q_sample(inputs["x0"], inputs["t"], inputs["noise"])
        target = distillation_target(model.diffusion, self.teacher, z_t, inputs["t"], self.student_steps)
        loss = F.mse_loss(model.unet(z_t, inputs["t"]), target["v"])
        return loss, {}

    def calibration_forward(self, model, batch, gen):
        """Observers see the student's own inputs: x_t on its N timesteps."""
        inputs = self.inputs(batch, model, gen)
        model.unet(model.diffusion.q_sample(inputs["x0"], inputs["t"], inputs["noise"]), inputs["t"])
