"""Option aliases shared by several commands, defined once."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from ubdiff_onnx.errors import UserError
from ubdiff_onnx.runtime.multistep import DEFAULT_SAMPLER, DEFAULT_STEPS, ODE_SOLVERS, SAMPLERS, SPACINGS

SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for every random draw; the same seed gives the same result.")]
ThreadsOpt = Annotated[int, typer.Option("--threads", min=0, help="Intra-op threads of every component; 0 (default): the measured per-component rule, 1 thread for each component, the U-Net on all cores from batch 8 (docs/sampling.md).")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an existing non-empty output.")]
OutDirArg = Annotated[Path, typer.Argument(help="Output folder.")]
SamplerOpt = Annotated[str, typer.Option("--sampler", help=f"{', '.join(SAMPLERS)}: dpmpp2m/dpmpp3m (DPM-Solver++) and unipc are few-step ODE solvers; default {DEFAULT_SAMPLER}, {DEFAULT_STEPS} steps (docs/sampling.md).")]
SpacingOpt = Annotated[Optional[str], typer.Option("--timestep-spacing", help=f"{'|'.join(SPACINGS)} as diffusers names them (ODE solvers only; default linspace).")]
ClipX0Opt = Annotated[bool, typer.Option("--clip-x0/--no-clip-x0", help="Clip the predicted x̂0 to [-1,1] at every step, as the original DDIM does (latents are tanh outputs).")]


def check_sampler_flags(sampler: str, steps: int | None, eta: float, spacing: str | None) -> None:
    """Bad sampler flags → UserError before any bundle is loaded (needs no bundle to decide)."""
    if sampler not in SAMPLERS:
        raise UserError(f"--sampler: expected one of {', '.join(SAMPLERS)}, got {sampler!r}")
    if spacing is not None and spacing not in SPACINGS:
        raise UserError(f"--timestep-spacing: expected one of {', '.join(SPACINGS)}, got {spacing!r}")
    if spacing is not None and sampler not in ODE_SOLVERS:
        raise UserError(f"--timestep-spacing applies to {', '.join(ODE_SOLVERS)}; {sampler} uses the original UB-Diff timesteps")
    if eta and sampler != "ddim":
        raise UserError(f"--eta applies to ddim only; {sampler} is {'ancestral already' if sampler == 'ddpm' else 'a deterministic ODE solver'}")
    if sampler in ODE_SOLVERS and steps is not None:
        order = ODE_SOLVERS[sampler][1]
        if steps < order:
            raise UserError(f"--steps {steps} is too few for {sampler} (a multistep solver of order {order}): use at least {order}")
