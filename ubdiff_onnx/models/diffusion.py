"""Gaussian diffusion over the latent: training loss and the two samplers of the original code.

The schedule tables come from :mod:`ubdiff_onnx.runtime.schedule` (numpy), the same tables the Pi
runtime uses, so torch and onnxruntime samplers agree step for step. All sampler arithmetic runs in
float32 on those tables, as the original ``GaussianDiffusion1D`` does.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ubdiff_onnx.runtime.schedule import ddim_timesteps, make_schedule

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _at(table: torch.Tensor, t: torch.Tensor, ndim: int) -> torch.Tensor:
    """table[t] shaped (B,1,1,…) to broadcast over a (B,…) tensor of ``ndim`` dims."""
    return table.gather(-1, t).reshape(t.shape[0], *((1,) * (ndim - 1)))


class GaussianDiffusion(nn.Module):
    """Holds the schedule (non-persistent buffers: they are derived from the config)."""

    def __init__(self, timesteps: int = 256, objective: str = "pred_v", schedule: str = "cosine", cosine_s: float = 0.008) -> None:
        super().__init__()
        self.objective = objective
        self.num_timesteps = timesteps
        tables = make_schedule(schedule, timesteps, objective, cosine_s)
        for name, value in tables.as_dict().items():
            self.register_buffer(name, torch.from_numpy(value.copy()), persistent=False)

    # -- parameterisations ---------------------------------------------------------------------
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        n = x0.ndim
        return _at(self.sqrt_alphas_cumprod, t, n) * x0 + _at(self.sqrt_one_minus_alphas_cumprod, t, n) * noise

    def v_target(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        n = x0.ndim
        return _at(self.sqrt_alphas_cumprod, t, n) * noise - _at(self.sqrt_one_minus_alphas_cumprod, t, n) * x0

    def predict_x0_eps(self, model_output: torch.Tensor, x: torch.Tensor, t: torch.Tensor, clip: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(x̂0, ε̂) from the network output, as the original ``model_predictions``: x̂0 clipped to
        [-1,1]; for pred_v/pred_x0 ε is re-derived from the clipped x̂0, for pred_noise ε is the output."""
        n = x.ndim
        if self.objective == "pred_noise":
            eps = model_output
            x0 = _at(self.sqrt_recip_alphas_cumprod, t, n) * x - _at(self.sqrt_recipm1_alphas_cumprod, t, n) * eps
            return (x0.clamp(-1.0, 1.0) if clip else x0), eps
        if self.objective == "pred_x0":
            x0 = model_output
        else:  # pred_v
            x0 = _at(self.sqrt_alphas_cumprod, t, n) * x - _at(self.sqrt_one_minus_alphas_cumprod, t, n) * model_output
        if clip:
            x0 = x0.clamp(-1.0, 1.0)
        eps = (_at(self.sqrt_recip_alphas_cumprod, t, n) * x - x0) / _at(self.sqrt_recipm1_alphas_cumprod, t, n)
        return x0, eps

    def alpha_sigma(self, t: torch.Tensor, ndim: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(√ᾱ_t, √(1-ᾱ_t)) shaped to broadcast; t = -1 means the clean data (1, 0)."""
        clean = (t < 0).reshape(t.shape[0], *((1,) * (ndim - 1)))
        tt = t.clamp(min=0)
        a = _at(self.sqrt_alphas_cumprod, tt, ndim)
        s = _at(self.sqrt_one_minus_alphas_cumprod, tt, ndim)
        return torch.where(clean, torch.ones_like(a), a), torch.where(clean, torch.zeros_like(s), s)

    def ddim_step(self, model_output: torch.Tensor, x: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor, clip: bool = True) -> torch.Tensor:
        """One deterministic (η = 0) DDIM step x_t → x_{t_next} per sample (t_next = -1: x̂0), the
        arithmetic of :meth:`ddim_sample` on per-sample timesteps."""
        x0, eps = self.predict_x0_eps(model_output, x, t, clip=clip)
        a_next, s_next = self.alpha_sigma(t_next, x.ndim)
        return a_next * x0 + s_next * eps

    def p_mean_variance(self, model: Denoiser, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Posterior mean, log-variance and clipped x̂0 of p(x_{t-1} | x_t)."""
        x0, _ = self.predict_x0_eps(model(x, t), x, t, clip=True)
        n = x.ndim
        mean = _at(self.posterior_mean_coef1, t, n) * x0 + _at(self.posterior_mean_coef2, t, n) * x
        return mean, _at(self.posterior_log_variance_clipped, t, n), x0

    # -- training ------------------------------------------------------------------------------
    def loss(self, model: Denoiser, x0: torch.Tensor, t: torch.Tensor | None = None, noise: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """MSE on the objective's target, per-sample mean weighted by loss_weight[t] (snr/(snr+1) for pred_v)."""
        b = x0.shape[0]
        if t is None:
            t = torch.randint(0, self.num_timesteps, (b,), device=x0.device, generator=generator)
        if noise is None:
            noise = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
        x = self.q_sample(x0, t, noise)
        target = {"pred_noise": noise, "pred_x0": x0}.get(self.objective)
        if target is None:
            target = self.v_target(x0, t, noise)
        per_sample = F.mse_loss(model(x, t), target, reduction="none").reshape(b, -1).mean(dim=1)
        return (per_sample * self.loss_weight.gather(0, t)).mean()

    # -- sampling ------------------------------------------------------------------------------
    @torch.no_grad()
    def ddpm_sample(self, model: Denoiser, x_T: torch.Tensor, noises: Iterable[torch.Tensor] | None = None, generator: torch.Generator | None = None, progress: Callable[[int], None] | None = None) -> torch.Tensor:
        """Ancestral sampling over all T steps (the original ``p_sample_loop``).

        ``noises`` (optional) yields the noise for t = T-1 … 1 in that order; otherwise it is drawn
        from ``generator``.
        """
        x = x_T
        it = iter(noises) if noises is not None else None
        for t in reversed(range(self.num_timesteps)):
            tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
            mean, logvar, _ = self.p_mean_variance(model, x, tt)
            if t > 0:
                z = next(it) if it is not None else torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
                x = mean + (0.5 * logvar).exp() * z
            else:
                x = mean
            if progress:
                progress(1)
        return x

    @torch.no_grad()
    def ddim_sample(self, model: Denoiser, x_T: torch.Tensor, steps: int, eta: float = 0.0, generator: torch.Generator | None = None, progress: Callable[[int], None] | None = None) -> torch.Tensor:
        """The original ``ddim_sample``: S steps on truncated-linspace times, x̂0 clipped."""
        x = x_T
        for t, t_next in ddim_timesteps(self.num_timesteps, steps):
            tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
            x0, eps = self.predict_x0_eps(model(x, tt), x, tt, clip=True)
            if t_next < 0:
                x = x0
            else:
                a, a_next = self.alphas_cumprod[t], self.alphas_cumprod[t_next]
                sigma = eta * ((1 - a / a_next) * (1 - a_next) / (1 - a)).sqrt()
                c = (1 - a_next - sigma**2).sqrt()
                x = x0 * a_next.sqrt() + c * eps
                if eta > 0:
                    x = x + sigma * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            if progress:
                progress(1)
        return x
