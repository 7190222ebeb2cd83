"""``ubdiff-onnx train``: the UB-Diff stages and the QAT stages, resumable, DDP under torchrun."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ubdiff_onnx.cli._errors import fail, user_errors
from ubdiff_onnx.cli._options import SeedOpt
from ubdiff_onnx.cli.app import app

STAGE_HELP = ("autoencoder | seismic | diffusion | qat-decoders | qat-diffusion | all (in that order); distill: a few-step "
              "INT8 student of the diffusion U-Net (after qat-decoders; docs/sampling.md).")


@app.command("train")
@user_errors
def train(
    run_dir: Annotated[Path, typer.Argument(help="Run folder: one checkpoint per stage (<stage>.pt, last.pt), run.json, metrics.jsonl, samples/.")],
    data: Annotated[Optional[Path], typer.Option("--data", help="OpenFWI folder (seismic_data/ + velocity_map/). Default: the embedded curvefault-a dataset.")] = None,
    dataset: Annotated[Optional[str], typer.Option("--dataset", help="Normalisation constants: OpenFWI name (e.g. curvefault-a) or a .json file. Default: recorded in the run / by `data synth`.")] = None,
    preset: Annotated[Optional[str], typer.Option("--preset", help="tiny | small | paper | refactor (default: the run's, else tiny).")] = None,
    stage: Annotated[str, typer.Option("--stage", help=STAGE_HELP)] = "all",
    resume: Annotated[bool, typer.Option("--resume", help="Continue from RUN_DIR's checkpoints (also after Ctrl-C/SIGTERM); finished stages are skipped.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Train the stage(s) again, replacing their checkpoints.")] = False,
    seed: SeedOpt = 0,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda (under torchrun: one GPU per process).")] = "auto",
    epochs: Annotated[Optional[int], typer.Option("--epochs", min=1, help="Override the epochs of every phase run.")] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", min=1, help="Cap optimizer steps per epoch (and calibration batches): quick runs.")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Override the global batch size (split over torchrun processes).")] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", min=0.0, help="Override the learning rate.")] = None,
    init: Annotated[Optional[Path], typer.Option("--init", help="Start the first stage from this checkpoint (e.g. from convert-checkpoint) instead of RUN_DIR's previous stage.")] = None,
    val_fraction: Annotated[Optional[float], typer.Option("--val-fraction", help="Held-out validation fraction (fixed for the run; default 0.1 tiny, 0.2 paper).")] = None,
    paired_fraction: Annotated[Optional[float], typer.Option("--paired-fraction", help="Fraction of training maps whose seismic is used (UB-Diff's unbalanced pairs).")] = None,
    paired_count: Annotated[Optional[int], typer.Option("--paired-count", help="Number of paired training samples (wins over --paired-fraction).")] = None,
    extra_velocity_maps: Annotated[Optional[int], typer.Option("--extra-velocity-maps", min=0, help="Extra velocity maps from the folder's `data synth` generator for the velocity-only stages (autoencoder, diffusion): maps cost ~0.2 ms, pairs ~150 ms. Fixed for the run; default: small 16384, others 0.")] = None,
    workers: Annotated[int, typer.Option("--workers", min=0, help="DataLoader workers for datasets too large to hold in memory.")] = 0,
    threads: Annotated[int, typer.Option("--threads", min=0, help="Intra-op CPU threads per process (0 = all cores but one, shared among torchrun processes).")] = 0,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bars on stderr.")] = True,
    student_steps: Annotated[Optional[int], typer.Option("--student-steps", help="--stage distill: U-Net calls of the student, a power of two (1, 2, 4, … 128) [default: 4]; writes RUN_DIR/distill-N.pt.")] = None,
) -> None:
    """Train UB-Diff stage by stage; checkpoints are our format, ready for `export`.

    Multi-process: `torchrun --nproc_per_node N -m ubdiff_onnx train RUN_DIR ...` (NCCL on GPUs,
    gloo on CPU) — the same command, no other change.
    """
    from ubdiff_onnx.training import Overrides, TrainOptions, train as run_training
    from ubdiff_onnx.training.interrupt import TrainingInterrupted

    opts = TrainOptions(
        run_dir=run_dir, data=data, dataset=dataset, preset=preset, stage=stage, resume=resume, overwrite=overwrite,
        seed=seed, device=device, overrides=Overrides(epochs=epochs, steps=steps, batch_size=batch_size, lr=lr),
        init=init, val_fraction=val_fraction, paired_fraction=paired_fraction, paired_count=paired_count,
        workers=workers, threads=threads, progress=progress, student_steps=student_steps, extra_velocity_maps=extra_velocity_maps,
    )
    try:
        results = run_training(opts)
    except TrainingInterrupted as exc:
        raise fail(str(exc), code=exc.exit_code) from None
    if int(os.environ.get("RANK", "0")) == 0:
        _summary(results, run_dir)


def _summary(results: list[dict], run_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{run_dir}: validation loss on the held-out split")
    for col in ("stage", "phase", "first", "last", "other"):
        table.add_column(col)
    for r in results:
        vals = [h for h in r.get("history", []) if h.get("kind") == "val"]
        for ph in dict.fromkeys(h["phase"] for h in vals):
            mine = [h for h in vals if h["phase"] == ph]
            extra = [f"ssim {mine[-1]['val_ssim']:.3f}"] if "val_ssim" in mine[-1] else []
            if "seconds" in r and ph == mine[-1]["phase"] and ph == vals[-1]["phase"]:
                extra.append(f"stage took {r['seconds']:.0f} s")
            table.add_row(r["stage"] + (" (skipped)" if r.get("skipped") else ""), ph, f"{mine[0]['val_loss']:.4f}",
                          f"{mine[-1]['val_loss']:.4f}", ", ".join(extra))
        s = r.get("samples") or {}
        if s:
            table.add_row(r["stage"], "DDIM samples", "", "", f"nearest-latent distance {s['sample_nn']:.3f} "
                          f"(data {s['data_nn']:.3f}, matched Gaussian {s['gauss_nn']:.3f}, noise {s['noise_nn']:.3f})")
    Console(stderr=True).print(table)
    print(run_dir / "last.pt", file=sys.stdout)
