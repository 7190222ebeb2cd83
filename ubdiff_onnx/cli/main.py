"""Entry point: ``ubdiff-onnx`` with one sub-command per stage of the pipeline.

Command modules are imported here (cheap: heavy libraries are imported inside command bodies).
"""

from __future__ import annotations

from ubdiff_onnx.cli import bench_cmd, checkpoint_cmd, evaluate_cmd, export_cmd, quickstart_cmd, sample_cmd  # noqa: F401  (register commands)
from ubdiff_onnx.cli import train_cmd  # noqa: F401  (register the train command)
from ubdiff_onnx.cli.app import app

from ubdiff_onnx.cli import inversion_cmd

app.add_typer(inversion_cmd.app, name="inversion", help="Train and test the judge (OpenFWI's InversionNet) that `evaluate --judge` uses.")

try:
    from ubdiff_onnx.cli import data_cmd

    app.add_typer(data_cmd.app, name="data", help="Make, check and show OpenFWI-format data.")
except ImportError:  # pragma: no cover - data commands absent from this build
    pass


def main() -> None:
    app()


if __name__ == "__main__":
    main()
