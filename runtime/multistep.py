"""Few-step ODE solvers in numpy: DPM-Solver++ (multistep, order 2/3) and UniPC (bh2).

Same interface as the DDPM/DDIM schedulers (``set_timesteps``, ``timesteps``, ``step``). They
follow diffusers' ``DPMSolverMultistepScheduler`` (``algorithm_type="dpmsolver++"``, midpoint,
``lower_order_final=True``, ``final_sigmas_type="zero"``) and ``UniPCMultistepScheduler``
(``predict_x0=True``, ``solver_type="bh2"``, ``lower_order_final=True``) step for step on the
bundle's discrete β table; with ``clip_x0`` the data prediction x̂0 is clamped to [-1, 1] (the
latents come from a tanh encoder; the original clips x̂0 in DDIM too), which diffusers does not do.

Both solvers work in x̂0 ("data prediction") form over λ = log(α/σ). Scalar coefficients are
computed in float64, arrays stay float32.
"""

from __future__ import annotations

import numpy as np

from ubdiff_onnx.runtime.schedule import ScheduleTables

F32 = np.float32
SPACINGS = ("linspace", "leading", "trailing")


def spaced_timesteps(total: int, steps: int, spacing: str) -> np.ndarray:
    """Descending int64 timesteps as diffusers' ``timestep_spacing`` (``steps_offset`` 0); strictly
    decreasing, or ValueError naming the largest step count that is."""
    if spacing not in SPACINGS:
        raise ValueError(f"--timestep-spacing must be one of {', '.join(SPACINGS)}, got {spacing!r}")
    if not 1 <= steps <= total:
        raise ValueError(f"--steps must be between 1 and {total}, got {steps}")
    ts = _spaced(total, steps, spacing)
    if not _distinct(ts, steps):
        ok = max(s for s in range(1, total + 1) if _distinct(_spaced(total, s, spacing), s))
        raise ValueError(f"--steps {steps} with --timestep-spacing {spacing} repeats timesteps; use at most {ok}")
    return ts


def _spaced(total: int, steps: int, spacing: str) -> np.ndarray:
    if spacing == "linspace":
        ts = np.linspace(0, total - 1, steps + 1).round()[::-1][:-1]
    elif spacing == "leading":
        ratio = total // (steps + 1)
        ts = (np.arange(0, steps + 1) * ratio).round()[::-1][:-1]
    else:
        ts = np.arange(total, 0, -total / steps).round() - 1
    return ts.astype(np.int64)


def _distinct(ts: np.ndarray, steps: int) -> bool:
    return len(ts) == steps and bool(np.all(np.diff(ts) < 0)) and ts[-1] >= 0


class MultistepScheduler:
    """Shared parts: timesteps, the (α, σ, λ) of each step and of the final σ = 0, x̂0 conversion,
    and the history of x̂0 predictions. The history resets whenever the first timestep comes again,
    so one scheduler serves batch after batch."""

    needs_noise = False
    solver_order = 2
    name = "multistep"

    def __init__(self, tables: ScheduleTables, objective: str = "pred_v", spacing: str = "linspace", clip_x0: bool = True) -> None:
        if objective not in ("pred_v", "pred_noise", "pred_x0"):
            raise ValueError(f"unknown objective {objective!r}")
        if spacing not in SPACINGS:
            raise ValueError(f"--timestep-spacing must be one of {', '.join(SPACINGS)}, got {spacing!r}")
        self.tables, self.objective, self.spacing, self.clip_x0 = tables, objective, spacing, clip_x0
        self.set_timesteps(min(10, tables.num_timesteps))

    def set_timesteps(self, steps: int) -> None:
        if steps < self.solver_order:
            raise ValueError(f"--steps {steps} is too few for {self.name} (order {self.solver_order}): use at least {self.solver_order}")
        self.timesteps = spaced_timesteps(self.tables.num_timesteps, steps, self.spacing)
        ac = self.tables.alphas_cumprod.astype(np.float64)[self.timesteps]
        # step i goes from (alpha[i], sigma[i]) to (alpha[i+1], sigma[i+1]); the last target is σ = 0
        self.alpha = np.append(np.sqrt(ac), 1.0)
        self.sigma = np.append(np.sqrt(1.0 - ac), 0.0)
        with np.errstate(divide="ignore"):
            self.lam = np.log(self.alpha) - np.log(self.sigma)
        self._index = {int(t): i for i, t in enumerate(self.timesteps)}
        self._reset()

    def _reset(self) -> None:
        self.history: list[np.ndarray] = []  # x̂0 predictions, newest last

    def noise_needed(self, t: int) -> bool:
        return False

    def to_x0(self, model_output: np.ndarray, i: int, sample: np.ndarray) -> np.ndarray:
        a, s = F32(self.alpha[i]), F32(self.sigma[i])
        if self.objective == "pred_v":
            x0 = a * sample - s * model_output
        elif self.objective == "pred_noise":
            x0 = (sample - s * model_output) / a
        else:
            x0 = model_output
        return np.clip(x0, F32(-1), F32(1)) if self.clip_x0 else x0

    def _begin(self, t: int) -> int:
        try:
            i = self._index[int(t)]
        except KeyError:
            raise ValueError(f"timestep {t} is not one of this scheduler's timesteps") from None
        if i == 0:
            self._reset()
        return i


class DPMSolverPlusPlusScheduler(MultistepScheduler):
    """DPM-Solver++ multistep (midpoint form for order 2), lower-order warm-up and final steps."""

    def __init__(self, tables: ScheduleTables, objective: str = "pred_v", order: int = 2, spacing: str = "linspace", clip_x0: bool = True) -> None:
        if order not in (1, 2, 3):
            raise ValueError(f"DPM-Solver++ order must be 1, 2 or 3, got {order}")
        self.solver_order, self.name = order, f"dpmpp{order}m"
        super().__init__(tables, objective, spacing, clip_x0)

    def step(self, model_output: np.ndarray, t: int, sample: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray:
        i = self._begin(t)
        n = len(self.timesteps)
        m0 = self.to_x0(model_output, i, sample)
        self.history = (self.history + [m0])[-self.solver_order:]
        if i == n - 1:  # σ_next = 0: the first-order step lands exactly on x̂0
            return m0
        order = min(self.solver_order, i + 1)
        if i == n - 2 and n < 15:
            order = min(order, 2)
        a_t, s_t, s_s0 = self.alpha[i + 1], self.sigma[i + 1], self.sigma[i]
        h = self.lam[i + 1] - self.lam[i]
        em1 = np.expm1(-h)  # e^{-h} - 1
        x = F32(s_t / s_s0) * sample - F32(a_t * em1) * m0
        if order == 1:
            return x
        m1 = self.history[-2]
        r0 = (self.lam[i] - self.lam[i - 1]) / h
        d1_0 = F32(1.0 / r0) * (m0 - m1)
        if order == 2:
            return x - F32(0.5 * a_t * em1) * d1_0
        m2 = self.history[-3]
        r1 = (self.lam[i - 1] - self.lam[i - 2]) / h
        d1_1 = F32(1.0 / r1) * (m1 - m2)
        d1 = d1_0 + F32(r0 / (r0 + r1)) * (d1_0 - d1_1)
        d2 = F32(1.0 / (r0 + r1)) * (d1_0 - d1_1)
        return x + F32(a_t * (em1 / h + 1.0)) * d1 - F32(a_t * ((em1 + h) / h**2 - 0.5)) * d2


def _unipc_coefficients(rks: np.ndarray, hh: float, order: int) -> tuple[np.ndarray, np.ndarray, float, float]:
    """R (order×order), b (order,), h·φ1(hh) and B(h) of UniPC-bh2 (hh = -h in data-prediction form)."""
    h_phi_1 = np.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1.0
    b_h = np.expm1(hh)
    fact = 1
    R, b = [], []
    for k in range(1, order + 1):
        R.append(rks ** (k - 1))
        b.append(h_phi_k * fact / b_h)
        fact *= k + 1
        h_phi_k = h_phi_k / hh - 1.0 / fact
    return np.array(R), np.array(b), h_phi_1, b_h


class UniPCScheduler(MultistepScheduler):
    """UniPC: a UniP-bh2 predictor after every model call and a UniC corrector before it (the
    corrector reuses the call just made, so it costs no extra U-Net evaluation)."""

    def __init__(self, tables: ScheduleTables, objective: str = "pred_v", order: int = 2, spacing: str = "linspace", clip_x0: bool = True) -> None:
        if order not in (1, 2, 3):
            raise ValueError(f"UniPC order must be 1, 2 or 3, got {order}")
        self.solver_order, self.name = order, "unipc" if order == 2 else f"unipc{order}"
        super().__init__(tables, objective, spacing, clip_x0)

    def _reset(self) -> None:
        super()._reset()
        self.last_sample: np.ndarray | None = None
        self.last_order = 0

    def _terms(self, i_s0: int, i_t: int, order: int, m0: np.ndarray, older: list[np.ndarray]):
        """Coefficients from step i_s0 to i_t with ``older`` x̂0 predictions (newest first) at i_s0-1, i_s0-2, ..."""
        h = self.lam[i_t] - self.lam[i_s0]
        rks = [(self.lam[i_s0 - k] - self.lam[i_s0]) / h for k in range(1, order)]
        d1s = [(mk - m0) / F32(rk) for mk, rk in zip(older, rks)]
        R, b, h_phi_1, b_h = _unipc_coefficients(np.array(rks + [1.0]), -h, order)
        return d1s, R, b, h_phi_1, b_h

    def step(self, model_output: np.ndarray, t: int, sample: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray:
        i = self._begin(t)
        n = len(self.timesteps)
        m_new = self.to_x0(model_output, i, sample)  # at the predicted (uncorrected) sample, as diffusers
        if i > 0 and self.last_sample is not None:
            sample = self._correct(i, m_new, sample)
        self.history = (self.history + [m_new])[-self.solver_order:]
        order = min(self.solver_order, n - i, i + 1)
        self.last_order, self.last_sample = order, sample
        if i == n - 1:
            return m_new
        m0 = m_new
        older = self.history[-2::-1][: order - 1]
        d1s, R, b, h_phi_1, b_h = self._terms(i, i + 1, order, m0, older)
        a_t, s_t, s_s0 = self.alpha[i + 1], self.sigma[i + 1], self.sigma[i]
        x = F32(s_t / s_s0) * sample - F32(a_t * h_phi_1) * m0
        if order == 1:
            return x
        rhos = np.array([0.5]) if order == 2 else np.linalg.solve(R[:-1, :-1], b[:-1])
        res = sum(F32(r) * d for r, d in zip(rhos, d1s))
        return x - F32(a_t * b_h) * res

    def _correct(self, i: int, m_t: np.ndarray, this_sample: np.ndarray) -> np.ndarray:
        order = self.last_order
        m0 = self.history[-1]  # x̂0 at step i-1
        older = self.history[-2::-1][: order - 1]
        d1s, R, b, h_phi_1, b_h = self._terms(i - 1, i, order, m0, older)
        a_t, s_t, s_s0 = self.alpha[i], self.sigma[i], self.sigma[i - 1]
        rhos = np.array([0.5]) if order == 1 else np.linalg.solve(R, b)
        x = F32(s_t / s_s0) * self.last_sample - F32(a_t * h_phi_1) * m0
        res = sum((F32(r) * d for r, d in zip(rhos[:-1], d1s)), F32(0) * m0)
        return x - F32(a_t * b_h) * (res + F32(rhos[-1]) * (m_t - m0))


# -- the samplers a bundle can run, and the default ------------------------------------------
SAMPLERS = ("ddim", "ddpm", "dpmpp2m", "dpmpp3m", "unipc")
ODE_SOLVERS = {"dpmpp2m": (DPMSolverPlusPlusScheduler, 2), "dpmpp3m": (DPMSolverPlusPlusScheduler, 3), "unipc": (UniPCScheduler, 2)}
"""The few-step solvers: deterministic (no --eta), with diffusers' --timestep-spacing."""
DEFAULT_SAMPLER, DEFAULT_STEPS, DEFAULT_SPACING = "unipc", 10, "linspace"
"""What ``sample`` runs without flags: the measured best setting (docs/sampling.md)."""


def default_steps(sampler: str, total: int) -> int:
    """--steps when not given: T for ddpm, 50 for ddim (the original's DDIM setting), else DEFAULT_STEPS."""
    return {"ddpm": total, "ddim": min(50, total)}.get(sampler, min(DEFAULT_STEPS, total))


def check_sampler_options(sampler: str, steps: int | None, eta: float, spacing: str | None) -> None:
    """The rules for sampler flags that need no bundle (ValueError with the flag's name): the one
    place both ``BundleSampler.make_scheduler`` and the CLI (before it loads a bundle) use."""
    if sampler not in SAMPLERS:
        raise ValueError(f"--sampler: expected one of {', '.join(SAMPLERS)}, got {sampler!r}")
    if spacing is not None and spacing not in SPACINGS:
        raise ValueError(f"--timestep-spacing: expected one of {', '.join(SPACINGS)}, got {spacing!r}")
    if spacing is not None and sampler not in ODE_SOLVERS:
        raise ValueError(f"--timestep-spacing applies to {', '.join(ODE_SOLVERS)}; {sampler} uses the original UB-Diff timesteps")
    if eta and sampler != "ddim":
        raise ValueError(f"--eta applies to ddim only; {sampler} is {'ancestral already' if sampler == 'ddpm' else 'a deterministic ODE solver'}")
    if sampler in ODE_SOLVERS and steps is not None and steps < ODE_SOLVERS[sampler][1]:
        order = ODE_SOLVERS[sampler][1]
        raise ValueError(f"--steps {steps} is too few for {sampler} (a multistep solver of order {order}): use at least {order}")
