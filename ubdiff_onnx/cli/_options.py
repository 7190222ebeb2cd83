"""Option aliases shared by several commands, defined once."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from ubdiff_onnx.errors import UserError
from ubdiff_onnx.runtime.multistep import DEFAULT_SAMPLER, DEFAULT_STEPS, SAMPLERS, SPACINGS, check_sampler_options

SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for every random draw; the same seed gives the same result.")]
ThreadsOpt = Annotated[int, typer.Option("--threads", min=0, help="Intra-op threads of every component; 0 (default): the measured per-component rule, 1 thread for each component, the U-Net on all cores from batch 8 (docs/sampling.md).")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an existing non-empty output.")]
OutDirArg = Annotated[Path, typer.Argument(help="Output folder.")]
SamplerOpt = Annotated[Optional[str], typer.Option("--sampler", help=f"{', '.join(SAMPLERS)}: dpmpp2m/dpmpp3m (DPM-Solver++) and unipc are few-step ODE solvers; default {DEFAULT_SAMPLER}, {DEFAULT_STEPS} steps, or a distilled student bundle's own sampler and steps (docs/sampling.md).")]
SpacingOpt = Annotated[Optional[str], typer.Option("--timestep-spacing", help=f"{'|'.join(SPACINGS)} as diffusers names them (ODE solvers only; default linspace).")]
ClipX0Opt = Annotated[bool, typer.Option("--clip-x0/--no-clip-x0", help="Clip the predicted x̂0 to [-1,1] at every step, as the original DDIM does (latents are tanh outputs).")]


def check_sampler_flags(sampler: Optional[str], steps: Optional[int], eta: float, spacing: Optional[str]) -> None:
    """Bad sampler flags → UserError before any bundle is loaded (``runtime.multistep``'s rules).
    Without --sampler the bundle decides (a student's own rule, else the default): checked on it."""
    if sampler is None:
        if spacing is not None and spacing not in SPACINGS:
            raise UserError(f"--timestep-spacing: expected one of {', '.join(SPACINGS)}, got {spacing!r}")
        return
    try:
        check_sampler_options(sampler, steps, eta, spacing)
    except ValueError as exc:
        raise UserError(str(exc)) from None
