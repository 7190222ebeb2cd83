"""Sample paired velocity maps and seismic data from a bundle with onnxruntime + numpy only.

The loop: x_T ~ N(0,1) (or given) → S scheduler steps, each one U-Net session call → latent x_0 →
velocity and seismic decoder sessions → denormalise to m/s and OpenFWI amplitude units with the
manifest's constants. Sessions are created once. Every sample ``i`` draws its x_T and noises from
its own stream ``default_rng([seed, i])``, so a sample does not depend on the batch size it ran in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import onnxruntime as ort

from ubdiff_onnx.runtime.backends import load_components
from ubdiff_onnx.runtime.manifest import BundleError, Manifest, onnxruntime_problem, read_manifest
from ubdiff_onnx.runtime.normalization import NormConstants, denormalize_seismic, denormalize_velocity
from ubdiff_onnx.runtime.multistep import DEFAULT_SAMPLER, DEFAULT_SPACING, ODE_SOLVERS, check_sampler_options, default_steps
from ubdiff_onnx.runtime.schedule import ScheduleTables, make_schedule, schedule_tables
from ubdiff_onnx.runtime.schedulers import DDIMScheduler, DDPMScheduler


def tables_from_manifest(man: Manifest) -> ScheduleTables:
    """Schedule tables from the manifest's β (authoritative) — the recipe is a cross-check."""
    sched = man.schedule
    if "betas" in sched:
        betas = np.asarray(sched["betas"], dtype=np.float64)
        if betas.shape != (int(sched["timesteps"]),):
            raise BundleError(f"{man.root / 'manifest.json'}: schedule.betas has {betas.size} entries, timesteps says {sched['timesteps']}")
        # β is stored as float32-rounded values; recompute from the recipe when it agrees, so the
        # float64 derivation matches the torch model bit for bit.
        recipe = make_schedule(sched.get("beta_schedule", "cosine"), int(sched["timesteps"]), man.data["objective"], float(sched.get("cosine_s", 0.008)))
        if np.allclose(recipe.betas, betas, rtol=0, atol=1e-7):
            return recipe
        return schedule_tables(betas, man.data["objective"])
    return make_schedule(sched.get("beta_schedule", "cosine"), int(sched["timesteps"]), man.data["objective"], float(sched.get("cosine_s", 0.008)))


@dataclass
class SampleBatch:
    indices: np.ndarray
    latent: np.ndarray      # (b, L)
    velocity: np.ndarray    # (b, 1, 70, 70) m/s
    seismic: np.ndarray     # (b, 5, 1000, 70) OpenFWI amplitude units


class BundleSampler:
    """Holds the three sessions of one bundle and runs the sampling loop."""

    def __init__(self, bundle_dir: Path, threads: int = 0, verify: bool = True, runtime: str = "onnxruntime") -> None:
        self.manifest = read_manifest(bundle_dir)
        problem = onnxruntime_problem(ort.__version__, self.manifest.data) if runtime == "onnxruntime" else None
        if problem:
            raise BundleError(f"{bundle_dir}: {problem}")
        if verify:
            self.manifest.verify_files()
        self.tables = tables_from_manifest(self.manifest)
        self.objective = self.manifest.data["objective"]
        self.latent_dim = self.manifest.latent_dim
        self.norm = NormConstants.from_dict(self.manifest.normalization, source=str(self.manifest.root / "manifest.json"))
        self.components = load_components(self.manifest, runtime, threads)
        self.student = self.manifest.student

    @property
    def default_sampler(self) -> str:
        """What runs without --sampler: a student's own rule, else the measured default."""
        return self.student.sampler if self.student is not None else DEFAULT_SAMPLER

    # -- pieces --------------------------------------------------------------------------------
    def make_scheduler(self, sampler: str | None, steps: int | None, eta: float = 0.0, spacing: str | None = None, clip_x0: bool = True):
        """``spacing`` (None = linspace) applies to the ODE solvers only; ddim/ddpm keep the original's times.
        ``sampler`` None: :attr:`default_sampler`. A student bundle runs its own rule only (ValueError otherwise)."""
        T = self.tables.num_timesteps
        if self.student is not None:
            self.student.check(sampler, steps, eta, spacing)
            return self.student.scheduler(self.tables, self.objective, clip_x0)
        sampler = sampler or DEFAULT_SAMPLER
        check_sampler_options(sampler, steps, eta, spacing)
        if sampler == "ddpm":
            sch = DDPMScheduler(self.tables, self.objective, clip_x0)
            sch.set_timesteps(steps)
            return sch
        steps = default_steps(sampler, T) if steps is None else steps
        if not 1 <= steps <= T:
            raise ValueError(f"--steps must be between 1 and {T}, got {steps}")
        if sampler == "ddim":
            sch = DDIMScheduler(self.tables, self.objective, eta, clip_x0)
        else:
            cls, order = ODE_SOLVERS[sampler]
            sch = cls(self.tables, self.objective, order, spacing or DEFAULT_SPACING, clip_x0)
        sch.set_timesteps(steps)
        return sch

    def unet(self, x: np.ndarray, t: int) -> np.ndarray:
        tt = np.full((x.shape[0],), t, dtype=np.int64)
        return self.components["unet"].run({"x": x, "t": tt})

    def denoise(self, x_T: np.ndarray, scheduler, rngs: list[np.random.Generator] | None = None, progress: Callable[[int], None] | None = None) -> np.ndarray:
        """x_T (b,1,L) → x_0 (b,1,L). ``rngs`` (one per sample) supply noise when the scheduler needs it."""
        x = np.ascontiguousarray(x_T, dtype=np.float32)
        for t in scheduler.timesteps:
            t = int(t)
            noise = None
            if scheduler.noise_needed(t):
                if rngs is None:
                    raise ValueError("this sampler needs noise: pass rngs")
                noise = np.stack([r.standard_normal((1, self.latent_dim), dtype=np.float32) for r in rngs])
            x = scheduler.step(self.unet(x, t), t, x, noise).astype(np.float32, copy=False)
            if progress:
                progress(x.shape[0])  # U-Net evaluations done (one per sample)
        return x

    def decode(self, latent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """latent (b,L) → (velocity, seismic) in normalised units."""
        latent = np.ascontiguousarray(latent.reshape(latent.shape[0], -1), dtype=np.float32)
        v = self.components["velocity_decoder"].run({"latent": latent})
        s = self.components["seismic_decoder"].run({"latent": latent})
        return v, s

    def initial_noise(self, seed: int, indices: np.ndarray) -> tuple[np.ndarray, list[np.random.Generator]]:
        rngs = [np.random.default_rng([seed, int(i)]) for i in indices]
        x_T = np.stack([r.standard_normal((1, self.latent_dim), dtype=np.float32) for r in rngs])
        return x_T, rngs

    # -- the loop ------------------------------------------------------------------------------
    def sample(
        self,
        num_samples: int,
        *,
        steps: int | None = None,
        sampler: str | None = None,
        seed: int = 0,
        eta: float = 0.0,
        spacing: str | None = None,
        clip_x0: bool = True,
        batch_size: int = 8,
        init_noise: np.ndarray | None = None,
        progress: Callable[[int], None] | None = None,
        first: int = 0,
    ) -> Iterator[SampleBatch]:
        """Yield decoded, denormalised batches; only one batch of seismic data is in memory at a time.
        ``steps`` None: the sampler's default (``runtime.multistep.default_steps``); ``sampler`` None:
        :attr:`default_sampler` (a distilled student's own).

        The samples are ``first … first + num_samples - 1`` of the run with this seed (``init_noise``
        row j is sample ``first + j``), so any range can be made on its own and matches a full run."""
        if num_samples < 1:
            raise ValueError(f"--num-samples must be >= 1, got {num_samples}")
        if batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
        if init_noise is not None and init_noise.shape != (num_samples, 1, self.latent_dim):
            raise ValueError(f"--init-noise has shape {init_noise.shape}, expected ({num_samples}, 1, {self.latent_dim})")
        if init_noise is not None and not np.all(np.isfinite(init_noise)):
            raise ValueError(f"--init-noise has {int(np.size(init_noise) - np.isfinite(init_noise).sum())} NaN/Inf values")
        scheduler = self.make_scheduler(sampler, steps, eta, spacing, clip_x0)
        for start in range(first, first + num_samples, batch_size):
            idx = np.arange(start, min(start + batch_size, first + num_samples))
            x_T, rngs = self.initial_noise(seed, idx)
            if init_noise is not None:
                x_T = np.ascontiguousarray(init_noise[idx - first], dtype=np.float32)
            x0 = self.denoise(x_T, scheduler, rngs, progress)
            latent = x0.reshape(len(idx), -1)
            v, s = self.decode(latent)
            yield SampleBatch(idx, latent, denormalize_velocity(v, self.norm), denormalize_seismic(s, self.norm))
