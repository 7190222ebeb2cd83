"""``ubdiff-onnx convert-checkpoint``: original/refactor UB-Diff files → our checkpoint format."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from ubdiff_onnx.cli._errors import user_errors
from ubdiff_onnx.cli.app import app
from ubdiff_onnx.errors import UserError


@app.command("convert-checkpoint")
@user_errors
def convert_checkpoint(
    src: Annotated[Path, typer.Argument(help="Checkpoint written by the original UB-Diff code (model-N.pt, check_point.pth) or the refactor.")],
    dst: Annotated[Path, typer.Argument(help="Where to write the ubdiff-onnx checkpoint (.pt).")],
    layout: Annotated[str, typer.Option("--layout", help="Source layout: original (junhuanyang/UB-Diff) or refactor (hengyizhu/UB-Diff).")] = ...,
    use_ema: Annotated[bool, typer.Option("--use-ema", help="Use the EMA weights of the U-Net (original model-N.pt files) as the main weights.")] = False,
    dataset: Annotated[Optional[str], typer.Option("--dataset", help="OpenFWI dataset the model was trained on (recorded for export's normalisation constants).")] = None,
    trust_pickle: Annotated[bool, typer.Option("--trust-pickle", help="Allow full pickle loading (runs code from the file!) for checkpoints that need more than tensors + argparse.Namespace. Only for files you trust.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace DST if it exists.")] = False,
) -> None:
    """Import an existing UB-Diff checkpoint; every tensor is mapped, reported as alias/derived, or reported as skipped."""
    from ubdiff_onnx.checkpoints.format import save_checkpoint
    from ubdiff_onnx.checkpoints.legacy import import_legacy

    console = Console(stderr=True)
    if dst.exists() and not overwrite:
        raise UserError(f"{dst}: already exists; pass --overwrite to replace it")
    if dst.exists() and dst.is_dir():
        raise UserError(f"{dst}: is a folder, expected a file path for the checkpoint")
    if trust_pickle:
        console.print(f"[yellow]warning:[/] --trust-pickle: loading {src} with full pickle (weights_only=False) runs code from the file")
    if dataset is not None:
        from ubdiff_onnx.runtime.normalization import resolve_constants

        resolve_constants(dataset)  # validate the name now, not at export time
    ckpt, report = import_legacy(src, layout, use_ema=use_ema, trust_pickle=trust_pickle)
    if dataset is not None:
        ckpt.meta["dataset"] = dataset
    save_checkpoint(ckpt, dst)
    cfg = ckpt.config
    console.print(f"[bold]{src}[/] ({report.source_kind}, layout {layout}) → [bold]{dst}[/]")
    console.print(
        f"  mapped {len(report.used)} tensors; {len(report.aliases)} aliases verified; "
        f"{len(report.derived)} schedule buffers recomputed and checked; {len(report.skipped)} skipped; {len(report.unused)} unused"
    )
    console.print(
        f"  inferred config: L={cfg.latent_dim}, U-Net dim {cfg.unet_dim} × {tuple(cfg.unet_dim_mults)}, "
        f"velocity decoder width {cfg.velocity_decoder_dims[-1]}, seismic token {cfg.seismic_token}, T={cfg.timesteps}"
        + (", EMA U-Net" if report.ema_used else "")
    )
    for key in report.unused:
        console.print(f"  [yellow]unused source tensor[/] {key}")
    if report.skipped:
        reasons = sorted(set(report.skipped.values()))
        for reason in reasons:
            n = sum(1 for r in report.skipped.values() if r == reason)
            console.print(f"  [yellow]skipped {n} tensors[/]: {reason}")
    for note in report.notes:
        console.print(f"  [yellow]warning:[/] {note}")
