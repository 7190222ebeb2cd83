"""The typer application object; command modules attach themselves to it."""

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
