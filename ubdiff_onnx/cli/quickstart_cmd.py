"""``ubdiff-onnx quickstart [OUT_DIR]``: data → train → export → sample → bench → evaluate → report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ubdiff_onnx.cli._errors import user_errors
from ubdiff_onnx.cli.app import app


@app.command("quickstart")
@user_errors
def quickstart(
    out_dir: Annotated[Path, typer.Argument(help="Where everything goes (run/, bundles/, samples/, bench/, evaluation/, report.md).")] = Path("quickstart-out"),
    force: Annotated[bool, typer.Option("--force", help="Redo every step, even those already done.")] = False,
    data: Annotated[Optional[Path], typer.Option("--data", help="Use this OpenFWI folder instead of the embedded synthetic dataset.")] = None,
    smoke: Annotated[bool, typer.Option("--smoke", help="A much smaller run (tests, CI): a few training steps, 2 samples, minimal benchmark.")] = False,
) -> None:
    """Run the whole mission on the embedded dataset and write OUT_DIR/report.md (re-running resumes)."""
    from rich.console import Console

    from ubdiff_onnx.quickstart import STEPS, Quickstart, QuickstartConfig, run_quickstart

    console = Console(stderr=True)
    q = Quickstart(out_dir, QuickstartConfig.smoke() if smoke else QuickstartConfig(), force=force, data=data)

    def on_step(i: int, step, status: str, left: float) -> None:
        console.print(f"[bold][{i + 1}/{len(STEPS)}] {step.name}[/]: {step.title} — {status}"
                      + (f" (about {left / 60:.0f} min left)" if status == "running" else ""), soft_wrap=True)

    with console.status("quickstart…"):
        report = run_quickstart(q, on_step)
    console.print(f"[green]done[/]: read {report}", soft_wrap=True)
