"""``ubdiff-onnx export``: our checkpoint → a bundle folder (SPEC §4)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from ubdiff_onnx.cli._errors import user_errors
from ubdiff_onnx.cli.app import app


@app.command("export")
@user_errors
def export(
    checkpoint: Annotated[Path, typer.Argument(help="An ubdiff-onnx checkpoint (from `train` or `convert-checkpoint`).")],
    out_dir: Annotated[Path, typer.Argument(help="Bundle folder to create (manifest.json + one folder per component).")],
    fmt: Annotated[str, typer.Option("--format", help="fp32 (ONNX float32), qdq (INT8 QuantizeLinear/DequantizeLinear ONNX) or torchscript (traced + frozen; deprecated upstream, for comparisons).")] = "fp32",
    calibrate: Annotated[Optional[Path], typer.Option("--calibrate", help="qdq: post-training quantization calibrated on this OpenFWI folder. Needed when the checkpoint has no QAT scales; a QAT checkpoint exports its own scales unless this is given (PTQ of its weights: the baseline QAT must beat).")] = None,
    weights: Annotated[Optional[str], typer.Option("--weights", help="qdq: int8 (default) or int4 for the seismic decoder's big Linear (MatMulNBits, block 128); torchscript: fp32 (default) or int8 (torch dynamic INT8 Linear).")] = None,
    weight_range: Annotated[Optional[str], typer.Option("--weight-range", help="qdq: int8 weight range. reduced (default): 7-bit [-64, 64], exact on every CPU; full: [-128, 127], fast and exact on ARM and x86 with AVX-512 VNNI / AVX-VNNI (on other x86 the u8·s8 kernels saturate, so the runtime runs it on onnxruntime's slower exact u8·u8 kernels). See docs/int8-cpus.md.")] = None,
    dataset: Annotated[Optional[str], typer.Option("--dataset", help="Normalisation constants: OpenFWI dataset name or a .json file (default: the one recorded at training).")] = None,
    use_ema: Annotated[bool, typer.Option("--use-ema", help="Export the EMA U-Net weights stored in the checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT_DIR if it exists and is not empty.")] = False,
    tolerance: Annotated[float, typer.Option("--tolerance", help="fp32: max abs diff allowed between onnxruntime and torch in validation.")] = 1e-4,
) -> None:
    """Export the U-Net step, velocity decoder and seismic decoder, then validate onnxruntime against torch."""
    from ubdiff_onnx.conversion.bundle import export_bundle

    console = Console(stderr=True)
    with console.status("exporting…") as status:
        result = export_bundle(
            checkpoint, out_dir, fmt, dataset=dataset, use_ema=use_ema, overwrite=overwrite, tolerance=tolerance,
            calibrate=calibrate, weights=weights, weight_range=weight_range,
            progress=lambda name: status.update(f"exported {name}…"), notice=console.print,
        )
    against = "the fake-quant (QAT) torch model" if result.manifest.get("validation_against_fp32") else "torch"
    table = Table(title=f"{out_dir} ({fmt}) — onnxruntime vs {against}")
    vs_fp32 = result.manifest.get("validation_against_fp32") or {}
    cols = ["component", "output", "shape", "max abs diff", "cosine", "limit", *(["cosine vs FP32"] if vs_fp32 else []), "bytes"]
    for col in cols:
        table.add_column(col)
    comps = result.manifest["components"]
    for c in result.checks:
        limit = (f"cosine ≥ {c.tolerance:g}" if fmt == "qdq" else f"diff ≤ {c.tolerance:g}") if c.gate else "reported"
        extra = [f"{vs_fp32[f'{c.component}.{c.output}']['cosine']:.6f}"] if vs_fp32 else []
        table.add_row(c.component, c.output, "×".join(map(str, c.shape)), f"{c.max_abs_diff:.2e}", f"{c.cosine:.6f}", limit, *extra,
                      f"{comps[c.component]['bytes']:,}")
    console.print(table)
    hist = (result.manifest.get("quantization") or {}).get("op_histogram")
    if hist:
        for name, ops in hist.items():
            int8 = {k: v for k, v in ops.items() if k.startswith(("QLinear", "QGemm", "MatMulInteger", "MatMulNBits", "DynamicQuantize"))}
            console.print(f"  {name}: INT8 kernels after onnxruntime optimisation: {int8}")
