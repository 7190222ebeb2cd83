"""Numpy DDPM and DDIM schedulers (diffusers-shaped: ``set_timesteps``, ``timesteps``, ``step``).

They reproduce the torch samplers of :mod:`ubdiff_onnx.models.diffusion` (and so the original
UB-Diff ``p_sample_loop`` / ``ddim_sample``) operation for operation in float32, from the same
schedule tables, so an onnxruntime loop and the torch model agree step for step. The few-step
solvers (DPM-Solver++, UniPC) are in :mod:`ubdiff_onnx.runtime.multistep`.
"""

from __future__ import annotations

import numpy as np

from ubdiff_onnx.runtime.schedule import ScheduleTables, ddim_timesteps

F32 = np.float32


def predict_x0_eps(tables: ScheduleTables, objective: str, model_output: np.ndarray, t: int, x: np.ndarray, clip: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(x̂0, ε̂) as the original ``model_predictions`` with ``clip_x_start``: x̂0 clipped to [-1,1];
    ε re-derived from the clipped x̂0 for pred_v/pred_x0, the raw output for pred_noise."""
    if objective == "pred_noise":
        eps = model_output
        x0 = tables.sqrt_recip_alphas_cumprod[t] * x - tables.sqrt_recipm1_alphas_cumprod[t] * eps
        return (np.clip(x0, F32(-1), F32(1)) if clip else x0), eps
    if objective == "pred_x0":
        x0 = model_output
    elif objective == "pred_v":
        x0 = tables.sqrt_alphas_cumprod[t] * x - tables.sqrt_one_minus_alphas_cumprod[t] * model_output
    else:
        raise ValueError(f"unknown objective {objective!r}")
    if clip:
        x0 = np.clip(x0, F32(-1), F32(1))
    eps = (tables.sqrt_recip_alphas_cumprod[t] * x - x0) / tables.sqrt_recipm1_alphas_cumprod[t]
    return x0, eps


class DDPMScheduler:
    """Ancestral sampling over all T steps; needs fresh N(0,1) noise for every step with t > 0."""

    needs_noise = True

    def __init__(self, tables: ScheduleTables, objective: str = "pred_v", clip_x0: bool = True) -> None:
        self.tables, self.objective, self.clip_x0 = tables, objective, clip_x0
        self.timesteps = np.arange(tables.num_timesteps - 1, -1, -1, dtype=np.int64)

    def set_timesteps(self, steps: int | None = None) -> None:
        T = self.tables.num_timesteps
        if steps not in (None, T):
            raise ValueError(f"ddpm runs all {T} steps; got steps={steps} (use ddim for fewer)")
        self.timesteps = np.arange(T - 1, -1, -1, dtype=np.int64)

    def noise_needed(self, t: int) -> bool:
        return t > 0

    def step(self, model_output: np.ndarray, t: int, sample: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray:
        tb = self.tables
        x0, _ = predict_x0_eps(tb, self.objective, model_output, t, sample, clip=self.clip_x0)
        mean = tb.posterior_mean_coef1[t] * x0 + tb.posterior_mean_coef2[t] * sample
        if t == 0:
            return mean
        if noise is None:
            raise ValueError("ddpm step with t > 0 needs noise")
        return mean + np.exp(F32(0.5) * tb.posterior_log_variance_clipped[t]) * noise


class DDIMScheduler:
    """DDIM on the original's truncated-linspace times; eta = 0 is deterministic."""

    def __init__(self, tables: ScheduleTables, objective: str = "pred_v", eta: float = 0.0, clip_x0: bool = True) -> None:
        if eta < 0:
            raise ValueError(f"eta must be >= 0, got {eta}")
        self.tables, self.objective, self.eta, self.clip_x0 = tables, objective, F32(eta), clip_x0
        self.set_timesteps(tables.num_timesteps)

    @property
    def needs_noise(self) -> bool:
        return bool(self.eta > 0)

    def set_timesteps(self, steps: int) -> None:
        self._set_pairs(ddim_timesteps(self.tables.num_timesteps, steps))

    def set_grid(self, timesteps) -> None:
        """Explicit descending timesteps (a distilled student's); the last step returns x̂0."""
        ts = [int(t) for t in timesteps]
        self._set_pairs(list(zip(ts, ts[1:] + [-1])))

    def _set_pairs(self, pairs: list[tuple[int, int]]) -> None:
        self.pairs = pairs
        self._next = dict(self.pairs)
        self.timesteps = np.array([t for t, _ in self.pairs], dtype=np.int64)

    def noise_needed(self, t: int) -> bool:
        return self.needs_noise and self._next[int(t)] >= 0

    def step(self, model_output: np.ndarray, t: int, sample: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray:
        tb = self.tables
        t_next = self._next[int(t)]
        x0, eps = predict_x0_eps(tb, self.objective, model_output, t, sample, clip=self.clip_x0)
        if t_next < 0:
            return x0
        a, a_next = tb.alphas_cumprod[t], tb.alphas_cumprod[t_next]
        sigma = self.eta * np.sqrt((F32(1) - a / a_next) * (F32(1) - a_next) / (F32(1) - a))
        c = np.sqrt(F32(1) - a_next - sigma**2)
        out = x0 * np.sqrt(a_next) + c * eps
        if self.eta > 0:
            if noise is None:
                raise ValueError("ddim step with eta > 0 needs noise")
            out = out + sigma * noise
        return out
