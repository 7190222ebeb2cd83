"""``ubdiff-onnx data …``: make (synth), validate (check) and look at (show) OpenFWI-format data."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from ubdiff_onnx.cli._errors import user_errors
from ubdiff_onnx.cli._options import OverwriteOpt, SeedOpt

app = typer.Typer(no_args_is_help=True, rich_markup_mode="rich")

DataDirArg = Annotated[Path, typer.Argument(help="OpenFWI folder (seismic_data/ + velocity_map/).")]
FamilyOpt = Annotated[
    str,
    typer.Option("--family", help="flatvel-a|b, curvevel-a|b, flatfault-a|b, curvefault-a|b."),
]
DatasetOpt = Annotated[
    Optional[str],
    typer.Option("--dataset", help="Normalisation constants: OpenFWI dataset name or a .json file (default: the family in synth.json, if any)."),
]


@app.command("synth")
@user_errors
def synth(
    out_dir: Annotated[Path, typer.Argument(help="Folder to create (OpenFWI layout + synth.json).")],
    family: FamilyOpt = "curvefault-a",
    samples: Annotated[int, typer.Option("--samples", min=1, help="Number of paired samples.")] = 256,
    seed: SeedOpt = 0,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Worker processes, one torch thread each (default: CPU cores).")] = os.cpu_count() or 1,
    samples_per_file: Annotated[int, typer.Option("--samples-per-file", min=1, help="Samples per .npy file (OpenFWI: 500).")] = 500,
    overwrite: OverwriteOpt = False,
) -> None:
    """Generate an OpenFWI-like dataset by acoustic wave simulation (deepwave, OpenFWI's settings)."""
    import time

    from ubdiff_onnx.data.synth import synthesize

    t0 = time.perf_counter()
    synthesize(out_dir, family, samples, seed, workers, samples_per_file=samples_per_file, overwrite=overwrite)
    elapsed = time.perf_counter() - t0
    print(f"{out_dir}: {samples} {family} samples in {elapsed:.1f} s ({60 * samples / elapsed:.0f} samples/min)")


def _constants(data_dir: Path, dataset: Optional[str]):
    from ubdiff_onnx.data.synth import read_metadata
    from ubdiff_onnx.runtime.normalization import resolve_constants

    if dataset is None:
        meta = read_metadata(data_dir)
        dataset = meta.get("family") if meta else None
    return (dataset, resolve_constants(dataset)) if dataset else (None, None)


@app.command("check")
@user_errors
def check(data_dir: DataDirArg, dataset: DatasetOpt = None) -> None:
    """Validate a folder (pairing, shapes, NaN/Inf, velocity range) and print counts and value ranges."""
    from rich.console import Console
    from rich.progress import Progress

    from ubdiff_onnx.data.openfwi import open_folder, scan_values

    folder = open_folder(data_dir)
    name, consts = _constants(data_dir, dataset)
    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("reading", total=len(folder))
        summary = scan_values(folder, consts, on_progress=lambda n: bar.advance(task, n))
    print(f"{data_dir}: OK — {summary.files} file pairs, {summary.samples} samples ({', '.join(sorted(summary.dtypes))})")
    print(f"  seismic  min {summary.seismic_min:.4g}  max {summary.seismic_max:.4g}")
    print(f"  velocity min {summary.velocity_min:.5g}  max {summary.velocity_max:.5g} m/s")
    if consts is not None:
        print(
            f"  {name}: data {consts.data_min:g}..{consts.data_max:g}, labels {consts.label_min:g}..{consts.label_max:g}; "
            f"outside [-1,1] after normalisation: seismic {100 * summary.seismic_outside:.3f} %, "
            f"velocity {100 * summary.velocity_outside:.3f} %"
        )


@app.command("show")
@user_errors
def show(
    data_dir: DataDirArg,
    index: Annotated[int, typer.Option("--index", help="Sample index (0-based, over all files in order).")] = 0,
    out: Annotated[Optional[Path], typer.Option("--out", help="PNG to write (default: sample_INDEX.png).")] = None,
) -> None:
    """Write a PNG of one sample: velocity map (m/s) and its five shot gathers."""
    from ubdiff_onnx.data.openfwi import open_folder
    from ubdiff_onnx.data.plot import plot_sample
    from ubdiff_onnx.errors import UserError

    folder = open_folder(data_dir)
    if not 0 <= index < len(folder):
        raise UserError(f"--index: {index} is out of range; {data_dir} has samples 0..{len(folder) - 1}")
    out = out or Path(f"sample_{index}.png")
    if out.suffix.lower() != ".png":
        raise UserError(f"--out: {out} should end in .png")
    plot_sample(folder.velocity(index), folder.seismic(index), out, title=f"{data_dir.name} · {folder.name(index)}")
    print(out)
