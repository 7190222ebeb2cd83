"""``ubdiff-onnx evaluate``: what quantization costs in quality and physics (JSON + Markdown + PNG report)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer

from ubdiff_onnx.cli._errors import user_errors
from ubdiff_onnx.cli._options import ClipX0Opt, SamplerOpt, SeedOpt, SpacingOpt, ThreadsOpt, check_sampler_flags
from ubdiff_onnx.cli.app import app
from ubdiff_onnx.runtime.multistep import DEFAULT_SAMPLER


class _RichProgress:
    """Adapts rich's Progress to the evaluation's ``task(name, total) -> advance`` hook."""

    def __init__(self, bar) -> None:
        self.bar = bar

    def task(self, name: str, total: int) -> Callable[[int], None]:
        tid = self.bar.add_task(name, total=total)
        return lambda n: self.bar.advance(tid, n)


@app.command("evaluate")
@user_errors
def evaluate(
    bundle: Annotated[Path, typer.Option("--bundle", help="Bundle to evaluate (usually the INT8 one: qdq, int4 or torchscript-int8).")],
    reference: Annotated[Optional[Path], typer.Option("--reference", help="FP32 bundle of the same checkpoint: enables the fidelity section and the FP32 columns.")] = None,
    checkpoint: Annotated[Optional[Path], typer.Option("--checkpoint", help="Training checkpoint (our format) whose encoder embeds maps for the Fréchet distance; the bundle has no encoder.")] = None,
    judge: Annotated[Optional[Path], typer.Option("--judge", help="Judge folder from `ubdiff-onnx inversion train` (trained on real pairs): pairwise SSIM and per-modality Fréchet distances with real ceilings/floors.")] = None,
    train_run: Annotated[Optional[Path], typer.Option("--train-run", help="Training run folder (run.json): the memorisation check compares generated maps' distance to its nearest training map with held-out real maps'.")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="OpenFWI folder of real pairs (default: the embedded curvefault-a dataset, made on first use).")] = None,
    num_samples: Annotated[int, typer.Option("--num-samples", "-n", min=2, help="Generated samples per bundle (also the number of real pairs forward-modelled).")] = 64,
    steps: Annotated[Optional[int], typer.Option("--steps", min=1, help="U-Net calls per sample (default: the sampler's, as `sample`).")] = None,
    sampler: SamplerOpt = None,
    timestep_spacing: SpacingOpt = None,
    clip_x0: ClipX0Opt = True,
    seed: SeedOpt = 0,
    num_real: Annotated[int, typer.Option("--num-real", min=2, help="Real velocity maps for the distribution (at most the dataset size).")] = 256,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Samples denoised and decoded together.")] = 8,
    panels: Annotated[int, typer.Option("--panels", min=1, help="Samples shown side by side in samples.png.")] = 4,
    threads: ThreadsOpt = 0,
    physics: Annotated[bool, typer.Option("--physics/--no-physics", help="Forward-model every pair (physics consistency; ~0.07 s a pair, the slowest part).")] = True,
    out: Annotated[Path, typer.Option("--out", help="Report folder: evaluate.json, evaluate.md, samples.png, physics.png, distribution.png.")] = Path("eval-report"),
    check: Annotated[bool, typer.Option("--check", help="Exit with status 1 when a measured target of issue 7 is missed.")] = False,
) -> None:
    """Sample the bundle (and --reference) from the same x_T; report fidelity, distribution and physics consistency."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ubdiff_onnx.errors import UserError
    from ubdiff_onnx.evaluation.report import write_report
    from ubdiff_onnx.evaluation.run import EvalInputs, EvalOptions, prepare, run_evaluation

    console = Console(stderr=True)
    check_sampler_flags(sampler, steps, 0.0, timestep_spacing)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    if data is None:
        from ubdiff_onnx.data.embedded import embedded_dataset

        data = embedded_dataset()
    command = "ubdiff-onnx " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["evaluate"] else "ubdiff-onnx evaluate"
    opts = EvalOptions(num_samples=num_samples, steps=steps, sampler=sampler, spacing=timestep_spacing, clip_x0=clip_x0, seed=seed, batch_size=batch_size, num_real=num_real, threads=threads, panels=min(panels, num_samples), physics=physics)
    prep = prepare(EvalInputs(bundle=bundle, data=data, reference=reference, checkpoint=checkpoint, judge=judge, train_run=train_run), opts)  # bad input fails here, fast
    with Progress(TextColumn("[bold]{task.description}[/]"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console) as bar:
        report = run_evaluation(prep, _RichProgress(bar), command=command)
    paths = write_report(report, out)

    fid, fr, phys = report["fidelity"], report["distribution"]["frechet"], report["physics"]
    if fid:
        console.print(f"fidelity: velocity MAE {fid['velocity_mae']['mean']:.2f} m/s, SSIM (valid region) {fid['velocity_ssim']['mean']:.4f}; "
                      f"seismic rel L2 {fid['seismic_rel_l2']['mean']:.4g}, corr {fid['seismic_corr']['mean']:.4f}")
    if fr:
        extra = f", reference {fr['reference_vs_real']:.4g}" if fr["reference_vs_real"] is not None else ""
        floor = f" (real vs real {fr['real_half_vs_half']:.4g})" if fr["real_half_vs_half"] is not None else ""
        console.print(f"Fréchet distance to real in the UB-Diff encoder's latent space (not independent of the model): bundle {fr['bundle_vs_real']:.4g}{extra}{floor}")
    jd = report.get("judge")
    if jd:
        ps = jd["pairwise_ssim"]
        ref_part = f", reference {ps['reference']['mean']:.4f}" if "reference" in ps else ""
        console.print(f"judge: pairwise SSIM (OpenFWI) bundle {ps['bundle']['mean']:.4f}{ref_part}; real pairs (ceiling) {ps['real_ceiling']['mean']:.4f}")
        for mod in ("seismic", "velocity"):
            e = jd["frechet"][mod]
            if e["bundle"] is not None:
                ref_part = f", reference {e['reference']:.4g}" if e.get("reference") is not None else ""
                console.print(f"judge: Fréchet {mod} bundle {e['bundle']:.4g}{ref_part}; real vs real (floor) {e['real_floor']:.4g} ({jd['frechet_count']} vs {jd['frechet_count']})")
    if phys:
        line = ", ".join(f"{k} {phys[k]['rel_l2']['mean']:.4g}" for k in ("bundle", "reference", "real") if k in phys)
        console.print(f"physics rel L2: {line}")
    for note in report["notes"]:
        console.print(f"[yellow]note:[/] {note}")
    missed = [t for t in report["targets"] if t["met"] is False]
    for t in report["targets"]:
        if t["met"] is not None:
            mark = "[green]met[/]" if t["met"] else "[red]missed[/]"
            console.print(f"  target: {t['what']}: {t['measured']:.4g}{t['unit']} ({t['op']} {t['target']:g}{t['unit']}) {mark}")
    console.print(f"wrote {', '.join(str(p) for p in paths.values())}")
    if check and missed:
        print(f"error: {len(missed)} target(s) missed: {'; '.join(t['what'] for t in missed)}", file=sys.stderr)
        raise typer.Exit(code=1)
