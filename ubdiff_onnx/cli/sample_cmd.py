"""``ubdiff-onnx sample``: generate paired velocity + seismic samples from a bundle (no torch)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from ubdiff_onnx.cli._errors import user_errors
from ubdiff_onnx.cli._options import ClipX0Opt, SamplerOpt, SeedOpt, SpacingOpt, ThreadsOpt, check_sampler_flags
from ubdiff_onnx.cli.app import app
from ubdiff_onnx.errors import UserError
from ubdiff_onnx.runtime.multistep import DEFAULT_SAMPLER, DEFAULT_SPACING, ODE_SOLVERS


@app.command("sample")
@user_errors
def sample(
    bundle_dir: Annotated[Path, typer.Argument(help="Bundle folder made by `export` (manifest.json + components).")],
    num_samples: Annotated[int, typer.Option("--num-samples", "-n", help="How many velocity/seismic pairs to generate.")] = 4,
    steps: Annotated[Optional[int], typer.Option("--steps", help="U-Net calls per sample (1..T); default 10 for the ODE solvers, 50 for ddim; ddpm always runs all T.")] = None,
    sampler: SamplerOpt = None,
    seed: SeedOpt = 0,
    out: Annotated[Path, typer.Option("--out", help="Output .npz: velocity (N,1,70,70) m/s, seismic (N,5,1000,70), latent (N,L), seed, steps, sampler; with --layout openfwi, the output folder.")] = Path("samples.npz"),
    layout: Annotated[str, typer.Option("--layout", help="npz (one file) or openfwi (--out DIR: seismic_data/dataK.npy + velocity_map/modelK.npy + generation.json; resumable).")] = "npz",
    per_file: Annotated[Optional[int], typer.Option("--per-file", help="openfwi: samples per file [default: 500].")] = None,
    dtype: Annotated[Optional[str], typer.Option("--dtype", help="openfwi: float32 or float16 [default: float32].")] = None,
    shard: Annotated[Optional[str], typer.Option("--shard", help="openfwi: K/N writes only shard K's files (files K, K+N, …); the N shards together equal one run.")] = None,
    ray: Annotated[Optional[str], typer.Option("--ray", help="openfwi: write the files with Ray actors: auto (RAY_ADDRESS / `ray start` cluster, else a local one) or a cluster ADDRESS; needs ubdiff-onnx[cluster].")] = None,
    ray_actors: Annotated[int, typer.Option("--ray-actors", min=0, help="openfwi --ray: number of actors (0 = cluster CPUs / --threads).")] = 0,
    init_noise: Annotated[Optional[Path], typer.Option("--init-noise", help="(N,1,L) float32 .npy to start from instead of seeded noise (reproducible across runtimes).")] = None,
    png: Annotated[Optional[Path], typer.Option("--png", help="Also write one PNG per sample (velocity map + shot gathers) into this folder; needs matplotlib.")] = None,
    threads: ThreadsOpt = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Samples denoised and decoded together; lower it to save memory on a Pi.")] = 4,
    eta: Annotated[float, typer.Option("--eta", min=0.0, help="DDIM eta (0 = deterministic); ddim only.")] = 0.0,
    timestep_spacing: SpacingOpt = None,
    clip_x0: ClipX0Opt = True,
    runtime: Annotated[str, typer.Option("--runtime", help="onnxruntime (the Pi path, no torch) or torchscript (drives a TorchScript bundle with the same loop; imports torch).")] = "onnxruntime",
    allow_int8_saturation: Annotated[bool, typer.Option("--allow-int8-saturation", help="Run a full-range INT8 bundle on an x86 CPU without VNNI on the fast u8·s8 kernels anyway, with a warning: their pair sums saturate there (wrong outputs; for measuring only). Without it such a bundle runs exactly on onnxruntime's slower u8·u8 kernels. Same as UBDIFF_ONNX_ALLOW_INT8_SATURATION=1.")] = False,
) -> None:
    """Run the diffusion loop with onnxruntime + numpy, decode, and write denormalised samples."""
    import numpy as np
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ubdiff_onnx.runtime.manifest import BundleError
    from ubdiff_onnx.runtime.npz_stream import StreamingNpzWriter
    from ubdiff_onnx.runtime.sampler import BundleSampler

    console = Console(stderr=True)
    if allow_int8_saturation:  # the environment also reaches Ray actors and worker processes
        from ubdiff_onnx.runtime.int8_host import ALLOW_ENV

        os.environ[ALLOW_ENV] = "1"
    if runtime not in ("onnxruntime", "torchscript"):
        raise UserError(f"--runtime: expected onnxruntime or torchscript, got {runtime!r}")
    check_sampler_flags(sampler, steps, eta, timestep_spacing)
    if num_samples < 1:
        raise UserError(f"--num-samples: expected >= 1, got {num_samples}")
    if layout not in ("npz", "openfwi"):
        raise UserError(f"--layout: expected npz or openfwi, got {layout!r}")
    if layout == "openfwi":
        if init_noise is not None or png is not None or runtime != "onnxruntime" or out.suffix == ".npz":
            raise UserError("--layout openfwi: give --out DIR (a folder); --init-noise, --png and --runtime torchscript work with --layout npz only")
        from ubdiff_onnx.cli.sample_openfwi import sample_openfwi

        spacing = timestep_spacing or (DEFAULT_SPACING if (sampler or DEFAULT_SAMPLER) in ODE_SOLVERS and not _is_student(bundle_dir) else None)
        return sample_openfwi(bundle_dir, out, num_samples=num_samples, steps=steps, sampler=sampler, seed=seed, eta=eta, batch_size=batch_size,
                              threads=threads, per_file=500 if per_file is None else per_file, dtype=dtype or "float32", shard=shard, ray=ray,
                              ray_actors=ray_actors, console=console,
                              options={"spacing": spacing, "clip_x0": clip_x0})
    if per_file is not None or dtype is not None or shard is not None or ray is not None:
        raise UserError("--per-file, --dtype, --shard and --ray need --layout openfwi")
    if out.suffix != ".npz":
        raise UserError(f"--out: expected a .npz file name, got {out}")
    if not out.parent.exists():
        raise UserError(f"--out: folder {out.parent} does not exist")
    if png is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UserError("--png needs matplotlib: pip install 'ubdiff-onnx[plot]'") from None
    try:
        smp = BundleSampler(bundle_dir, threads=threads, runtime=runtime)
    except BundleError as exc:
        raise UserError(str(exc)) from None
    try:
        steps = len(smp.make_scheduler(sampler, steps, eta, timestep_spacing, clip_x0).timesteps)
    except ValueError as exc:
        raise UserError(f"{bundle_dir}: {exc}" if smp.student is not None else str(exc)) from None
    sampler = sampler or smp.default_sampler
    noise = None
    if init_noise is not None:
        try:
            noise = np.load(init_noise, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise UserError(f"--init-noise {init_noise}: cannot read a .npy array ({exc})") from None
        if noise.shape != (num_samples, 1, smp.latent_dim):
            raise UserError(f"--init-noise {init_noise}: shape {noise.shape}, expected ({num_samples}, 1, {smp.latent_dim})")
        if not np.issubdtype(noise.dtype, np.floating) or not np.all(np.isfinite(noise)):
            bad = "not a float array" if not np.issubdtype(noise.dtype, np.floating) else f"{int(noise.size - np.isfinite(noise).sum())} NaN/Inf values"
            raise UserError(f"--init-noise {init_noise}: {bad}; expected finite float32 N(0,1) noise")
    if png is not None:
        png.mkdir(parents=True, exist_ok=True)

    writer = StreamingNpzWriter(out, "seismic", (num_samples, 5, 1000, 70))
    velocity = np.empty((num_samples, 1, 70, 70), np.float32)
    latent = np.empty((num_samples, smp.latent_dim), np.float32)
    try:
        with Progress(TextColumn("[bold]sampling[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("U-Net steps"), TimeRemainingColumn(), console=console) as bar:
            task = bar.add_task("steps", total=steps * num_samples)
            gen = smp.sample(num_samples, steps=steps, sampler=sampler, seed=seed, eta=eta, batch_size=batch_size, init_noise=noise,
                             spacing=timestep_spacing, clip_x0=clip_x0, progress=lambda n: bar.advance(task, n))
            for batch in gen:
                velocity[batch.indices] = batch.velocity
                latent[batch.indices] = batch.latent
                writer.append(batch.seismic)
                if png is not None:
                    from ubdiff_onnx.data.plot import plot_sample

                    for j, i in enumerate(batch.indices):
                        plot_sample(batch.velocity[j], batch.seismic[j], png / f"sample-{i:04d}.png", title=f"sample {i} (seed {seed}, {sampler} {steps})")
        writer.finish(velocity=velocity, latent=latent, seed=np.int64(seed), steps=np.int64(steps), sampler=np.str_(sampler), eta=np.float32(eta),
                      timestep_spacing=np.str_((timestep_spacing or DEFAULT_SPACING) if sampler in ODE_SOLVERS else ""), clip_x0=np.bool_(clip_x0),
                      bundle_precision=np.str_(smp.manifest.precision))
    except BaseException:
        writer.abort()
        raise
    console.print(f"wrote {out}: {num_samples} samples ({sampler}, {steps} steps, seed {seed}), velocity {velocity.min():.0f}–{velocity.max():.0f} m/s")


def _is_student(bundle_dir: Path) -> bool:
    """Whether a bundle is a distilled student (its manifest says; unreadable → no, checked later)."""
    from ubdiff_onnx.runtime.manifest import BundleError, read_manifest

    try:
        return read_manifest(bundle_dir).data.get("student") is not None
    except BundleError:
        return False
