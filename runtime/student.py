"""A distilled few-step student (``train --stage distill``): what its manifest promises, and its sampler.

A progressive-distillation student is trained for exactly one sampler and timestep grid — the
deterministic DDIM rule (x̂0 clipped, as the teacher's) on ``T-1 - k·T/N`` — and is only accurate
there: on any other step count it is a poorly trained ordinary denoiser. So a student bundle's
manifest carries a ``student`` block, ``sample`` uses it when no sampler flags are given, and any
other sampler, step count, ``--eta`` or spacing is refused in one line that names what it was
trained for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ubdiff_onnx.runtime.schedule import ScheduleTables
from ubdiff_onnx.runtime.schedulers import DDIMScheduler

STEP_RULES = ("ddim",)
"""Step rules a student can be trained for (progressive distillation keeps DDIM's)."""


@dataclass(frozen=True)
class Student:
    method: str
    sampler: str
    steps: int
    timesteps: tuple[int, ...]
    teacher_steps: int | None = None

    @classmethod
    def from_manifest(cls, block: Any, total: int, source: str = "manifest.json") -> "Student":
        """Validate a manifest's ``student`` block against the schedule's T (ValueError, one line)."""
        if not isinstance(block, dict):
            raise ValueError(f"{source}: student must be an object, got {type(block).__name__}")
        missing = [k for k in ("method", "sampler", "steps", "timesteps") if k not in block]
        if missing:
            raise ValueError(f"{source}: student lacks {', '.join(missing)}")
        sampler, steps, ts = block["sampler"], block["steps"], block["timesteps"]
        if sampler not in STEP_RULES:
            raise ValueError(f"{source}: student sampler {sampler!r} is not one this runtime has ({', '.join(STEP_RULES)}); upgrade ubdiff-onnx")
        ok = (isinstance(steps, int) and isinstance(ts, list) and len(ts) == steps >= 1 and all(isinstance(t, int) for t in ts)
              and all(a > b for a, b in zip(ts, ts[1:])) and 0 <= ts[-1] and ts[0] < total)
        if not ok:
            raise ValueError(f"{source}: student timesteps {ts!r} are not {steps} decreasing integers in [0, {total})")
        return cls(str(block["method"]), sampler, steps, tuple(ts), block.get("teacher_steps"))

    def trained_for(self) -> str:
        return f"--sampler {self.sampler} --steps {self.steps} (timesteps {', '.join(map(str, self.timesteps))})"

    def check(self, sampler: str | None, steps: int | None, eta: float = 0.0, spacing: str | None = None) -> None:
        """Refuse settings the student was not trained for (ValueError naming what it was)."""
        asked = []
        if sampler not in (None, self.sampler):
            asked.append(f"--sampler {sampler}")
        if steps not in (None, self.steps):
            asked.append(f"--steps {steps}")
        if eta:
            asked.append(f"--eta {eta:g}")
        if spacing is not None:
            asked.append(f"--timestep-spacing {spacing}")
        if asked:
            raise ValueError(f"this bundle is a {self.steps}-step distilled student ({self.method}): it was trained for "
                             f"{self.trained_for()} only, not {' '.join(asked)}; drop those flags (sample uses its own)")

    def scheduler(self, tables: ScheduleTables, objective: str, clip_x0: bool = True) -> DDIMScheduler:
        """The student's step rule: deterministic DDIM on its own grid, then x̂0."""
        sch = DDIMScheduler(tables, objective, 0.0, clip_x0)
        sch.set_grid(self.timesteps)
        return sch
