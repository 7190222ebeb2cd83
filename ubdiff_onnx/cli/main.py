"""Entry point: ``ubdiff-onnx`` with one sub-command per stage of the pipeline."""

from __future__ import annotations

import typer

from ubdiff_onnx import __version__

app = typer.Typer(
    name="ubdiff-onnx",
    help="UB-Diff: paired seismic + velocity generation, from QAT training to INT8 ONNX on a Raspberry Pi.",
    rich_markup_mode="rich",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        print(f"ubdiff-onnx {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """UB-Diff toolkit."""


def _register() -> None:
    # Each module defines its commands on ``app`` (or a sub-Typer); importing them is cheap because
    # heavy libraries (torch, onnx) are imported inside the command bodies.
    from ubdiff_onnx.cli import checkpoint_cmd, export_cmd  # noqa: F401

    try:
        from ubdiff_onnx.cli import data_cmd

        app.add_typer(data_cmd.app, name="data", help="Make, check and show OpenFWI-format data.")
    except ImportError:  # pragma: no cover - data commands not present in this build
        pass


_register()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
