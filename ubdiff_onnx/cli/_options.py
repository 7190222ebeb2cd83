"""Option aliases shared by several commands, defined once."""

from pathlib import Path
from typing import Annotated

import typer

SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for every random draw; the same seed gives the same result.")]
ThreadsOpt = Annotated[int, typer.Option("--threads", min=0, help="Intra-op threads (0 = runtime default).")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an existing non-empty output.")]
OutDirArg = Annotated[Path, typer.Argument(help="Output folder.")]
