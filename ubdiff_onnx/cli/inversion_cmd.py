"""``ubdiff-onnx inversion train|test``: the judge — OpenFWI's InversionNet trained on real pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from ubdiff_onnx.cli._errors import fail, user_errors
from ubdiff_onnx.cli._options import SeedOpt

app = typer.Typer(rich_markup_mode="rich", no_args_is_help=True, help="Train and test the judge (InversionNet) that `evaluate --judge` uses.")


@app.command("train")
@user_errors
def train(
    paths: Annotated[List[Path], typer.Argument(help="DATA… OUT: one or more OpenFWI folders of real pairs, then the judge folder to write.")],
    dataset: Annotated[Optional[str], typer.Option("--dataset", help="Normalisation constants: OpenFWI name or .json (default: the family `data synth` recorded).")] = None,
    width: Annotated[float, typer.Option("--width", help="Channel multiplier; 1 = OpenFWI's InversionNet (24.4 M parameters), 0.25 = 1.5 M.")] = 0.25,
    time_decimation: Annotated[int, typer.Option("--time-decimation", help="Read every d-th time sample (1, 2, 4, 8); the first time-strided blocks get stride 1 so later shapes are OpenFWI's.")] = 4,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Passes over the training pairs.")] = 10,
    steps: Annotated[Optional[int], typer.Option("--steps", min=1, help="Cap on optimizer steps in all (quick runs).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=2, help="Pairs per optimizer step.")] = 32,
    lr: Annotated[float, typer.Option("--lr", min=0.0, help="AdamW learning rate (OpenFWI: 1e-4).")] = 1e-4,
    lr_schedule: Annotated[str, typer.Option("--lr-schedule", help="constant | cosine (5 % warm-up, cosine to 0 at the last step: short runs end settled).")] = "cosine",
    weight_decay: Annotated[float, typer.Option("--weight-decay", min=0.0, help="AdamW weight decay (OpenFWI: 1e-4).")] = 1e-4,
    val_fraction: Annotated[float, typer.Option("--val-fraction", help="Held-out fraction of the pairs, validated every epoch.")] = 0.1,
    seed: SeedOpt = 0,
    threads: Annotated[int, typer.Option("--threads", min=0, help="torch CPU threads (0: all cores but one).")] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue OUT's judge (also after Ctrl-C / SIGTERM / kill).")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT's judge.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bar with ETA on stderr.")] = True,
) -> None:
    """Train the judge on real pairs: ℓ1 + ℓ2, AdamW, OpenFWI's normalisation; writes OUT/judge.pt, judge.json, val.png."""
    from ubdiff_onnx.errors import UserError
    from ubdiff_onnx.models.inversionnet import JudgeConfig
    from ubdiff_onnx.training.interrupt import TrainingInterrupted
    from ubdiff_onnx.training.judge import JudgeTrainOptions, train_judge

    if len(paths) < 2:
        raise UserError("expected DATA… OUT: at least one data folder and the judge folder to write")
    if resume and overwrite:
        raise UserError("--resume and --overwrite: choose one")
    *data, out = paths
    opts = JudgeTrainOptions(data=list(data), out=out, dataset=dataset, config=JudgeConfig(width=width, time_decimation=time_decimation),
                             epochs=epochs, max_steps=steps, batch_size=batch_size, lr=lr, lr_schedule=lr_schedule, weight_decay=weight_decay,
                             val_fraction=val_fraction, seed=seed, threads=threads, resume=resume, overwrite=overwrite, progress=progress)
    try:
        summary = train_judge(opts)
    except TrainingInterrupted as exc:
        raise fail(str(exc), code=exc.exit_code) from None
    if summary.get("val"):
        j, b = summary["val"]["judge"], summary["val"]["mean_map_baseline"]
        print(f"judge: {summary['parameters']:,} parameters, {summary['steps']} steps in {summary['train_seconds'] / 60:.1f} min "
              f"({summary['ms_per_training_sample']} ms per training sample, {summary['threads']} thread(s))")
        print(f"validation ({summary['pairs']['val']} pairs): SSIM (OpenFWI) {j['ssim_openfwi']:.4f} vs mean map {b['ssim_openfwi']:.4f}; "
              f"MAE {j['mae_ms']:.1f} m/s vs {b['mae_ms']:.1f}; MAE/RMSE on [-1,1] {j['mae']:.4f}/{j['rmse']:.4f}")
    print(f"wrote {out / 'judge.pt'}, {out / 'judge.json'}")


@app.command("test")
@user_errors
def test(
    judge: Annotated[Path, typer.Argument(help="Judge folder (or its judge.pt).")],
    data: Annotated[Path, typer.Argument(help="OpenFWI folder of pairs the judge did not train on.")],
    num: Annotated[Optional[int], typer.Option("--num", "-n", min=1, help="Test a seeded random subset of this many pairs (default: all).")] = None,
    seed: SeedOpt = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Pairs per forward pass.")] = 32,
    out: Annotated[Optional[Path], typer.Option("--out", help="Also write the result as JSON here.")] = None,
) -> None:
    """MAE and RMSE on [-1, 1], MAE in m/s and SSIM as OpenFWI's test.py computes them, beside the mean-map baseline."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ubdiff_onnx.data.openfwi import open_folder
    from ubdiff_onnx.evaluation.judge import Judge, score_judge
    from ubdiff_onnx.runtime.atomic import atomic_write_text

    console = Console(stderr=True)
    j = Judge(judge, flag="JUDGE")
    total = len(open_folder(data))
    n = total if num is None else min(num, total)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console) as bar:
        tid = bar.add_task("inverting", total=n)
        res = score_judge(j, data, num=num, seed=seed, batch_size=batch_size, progress=lambda k: bar.advance(tid, k))
    cols = ("MAE [-1,1]", "RMSE [-1,1]", "MAE m/s", "SSIM (OpenFWI)", "SSIM (valid region)")
    print(f"{res.data['tested']} pairs of {data}")
    print(f"{'':18s}" + "".join(f"{c:>21s}" for c in cols))
    for label, m in (("judge", res.metrics), ("mean-map baseline", res.baseline)):
        vals = (f"{m['mae']:.4f}", f"{m['rmse']:.4f}", f"{m['mae_ms']:.1f}", f"{m['ssim_openfwi']:.4f}", f"{m['ssim_valid']:.4f}")
        print(f"{label:18s}" + "".join(f"{v:>21s}" for v in vals))
    for note in res.notes:
        console.print(f"[yellow]note:[/] {note}")
    if out is not None:
        atomic_write_text(out, res.to_json())
        print(f"wrote {out}")
