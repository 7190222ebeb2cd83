"""The diffusion noise schedule in numpy, shared by the torch model and the Pi runtime.

UB-Diff uses the cosine schedule of Nichol & Dhariwal (s=0.008, β clipped at 0.999) over T=256
steps. Every derived quantity is computed in float64 and then stored as float32, exactly as the
original ``GaussianDiffusion1D`` registers its buffers, so both sides use identical float32 tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OBJECTIVES = ("pred_v", "pred_noise", "pred_x0")


def cosine_betas(timesteps: int, s: float = 0.008) -> np.ndarray:
    """float64 β_t of the cosine schedule, clipped to [0, 0.999]."""
    x = np.linspace(0.0, timesteps, timesteps + 1, dtype=np.float64)
    ac = np.cos(((x / timesteps) + s) / (1 + s) * np.pi * 0.5) ** 2
    ac = ac / ac[0]
    return np.clip(1.0 - (ac[1:] / ac[:-1]), 0.0, 0.999)


@dataclass(frozen=True)
class ScheduleTables:
    """All per-timestep float32 tables a sampler or a training loss needs (each of shape (T,))."""

    betas: np.ndarray
    alphas_cumprod: np.ndarray
    alphas_cumprod_prev: np.ndarray
    sqrt_alphas_cumprod: np.ndarray
    sqrt_one_minus_alphas_cumprod: np.ndarray
    log_one_minus_alphas_cumprod: np.ndarray
    sqrt_recip_alphas_cumprod: np.ndarray
    sqrt_recipm1_alphas_cumprod: np.ndarray
    posterior_variance: np.ndarray
    posterior_log_variance_clipped: np.ndarray
    posterior_mean_coef1: np.ndarray
    posterior_mean_coef2: np.ndarray
    loss_weight: np.ndarray

    @property
    def num_timesteps(self) -> int:
        return int(self.betas.shape[0])

    def as_dict(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def schedule_tables(betas: np.ndarray, objective: str = "pred_v") -> ScheduleTables:
    """Derive the tables from float64 betas (float64 maths, float32 storage)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    betas = np.asarray(betas, dtype=np.float64)
    alphas = 1.0 - betas
    ac = np.cumprod(alphas)
    ac_prev = np.concatenate([[1.0], ac[:-1]])
    post_var = betas * (1.0 - ac_prev) / (1.0 - ac)
    snr = ac / (1.0 - ac)
    weight = {"pred_noise": np.ones_like(snr), "pred_x0": snr, "pred_v": snr / (snr + 1.0)}[objective]
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    return ScheduleTables(
        betas=f32(betas),
        alphas_cumprod=f32(ac),
        alphas_cumprod_prev=f32(ac_prev),
        sqrt_alphas_cumprod=f32(np.sqrt(ac)),
        sqrt_one_minus_alphas_cumprod=f32(np.sqrt(1.0 - ac)),
        log_one_minus_alphas_cumprod=f32(np.log(1.0 - ac)),
        sqrt_recip_alphas_cumprod=f32(np.sqrt(1.0 / ac)),
        sqrt_recipm1_alphas_cumprod=f32(np.sqrt(1.0 / ac - 1.0)),
        posterior_variance=f32(post_var),
        posterior_log_variance_clipped=f32(np.log(np.maximum(post_var, 1e-20))),
        posterior_mean_coef1=f32(betas * np.sqrt(ac_prev) / (1.0 - ac)),
        posterior_mean_coef2=f32((1.0 - ac_prev) * np.sqrt(alphas) / (1.0 - ac)),
        loss_weight=f32(weight),
    )


def make_schedule(schedule: str = "cosine", timesteps: int = 256, objective: str = "pred_v", s: float = 0.008) -> ScheduleTables:
    """Tables from a recipe, as stored in a manifest (``{"schedule": "cosine", "timesteps": 256, ...}``)."""
    if schedule != "cosine":
        raise ValueError(f"unknown beta schedule {schedule!r} (only 'cosine' is used by UB-Diff)")
    if timesteps < 1:
        raise ValueError(f"timesteps must be >= 1, got {timesteps}")
    return schedule_tables(cosine_betas(timesteps, s), objective)


def ddim_timesteps(total: int, steps: int) -> list[tuple[int, int]]:
    """(t, t_next) pairs of the original ``ddim_sample``.

    ``times = reversed(int(linspace(-1, T-1, S+1)))``, with a *float32* linspace truncated toward
    zero, as torch computes it; the last pair ends at -1 (return x̂0).
    """
    if not 1 <= steps <= total:
        raise ValueError(f"steps must be in [1, {total}], got {steps}")
    # torch.linspace(start, end, n) in float32: a float32 step, then start + step*i (first half) or
    # end - step*(n-1-i) (second half), each rounded once (torch's CPU kernel uses fused multiply-add;
    # float64 arithmetic on the float32 step reproduces that single rounding exactly).
    n = steps + 1
    start, end = np.float32(-1.0), np.float32(total - 1)
    step = np.float64(np.float32((end - start) / np.float32(n - 1)))
    idx = np.arange(n, dtype=np.float64)
    vals = np.where(idx < n // 2, np.float64(start) + step * idx, np.float64(end) - step * (n - 1 - idx))
    vals = vals.astype(np.float32)
    times = [int(v) for v in np.trunc(vals)][::-1]
    return list(zip(times[:-1], times[1:]))


def halving_timesteps(total: int, steps: int) -> list[int]:
    """Descending timesteps of a progressively distilled ``steps``-step sampler: ``total - 1 -
    k·total/steps`` (diffusers' "trailing" spacing), so each halving keeps every other timestep of
    its teacher and every grid starts at t = T-1. ``steps`` must divide ``total``. For powers of two
    these are also the original DDIM's times (``ddim_timesteps``), so the student runs on that rule.
    """
    if steps < 1 or total % steps:
        raise ValueError(f"steps must divide T={total}, got {steps}")
    stride = total // steps
    return [total - 1 - k * stride for k in range(steps)]
