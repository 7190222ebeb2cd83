"""Write a bundle folder atomically: build it in a hidden sibling folder, rename at the end."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from ubdiff_onnx.errors import UserError
from ubdiff_onnx.runtime.atomic import make_public


def check_output_dir(out_dir: Path, overwrite: bool) -> None:
    out_dir = Path(out_dir)
    parent = out_dir.resolve().parent
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise UserError(f"{out_dir}: output folder exists and is not empty; pass --overwrite to replace it")
    if not parent.exists():
        raise UserError(f"{parent}: parent folder of the output does not exist")
    if not os.access(parent, os.W_OK):
        raise UserError(f"{parent}: not writable (cannot create {out_dir.name})")


@contextlib.contextmanager
def staged_dir(out_dir: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces ``out_dir``, on any error it is removed."""
    out_dir = Path(out_dir)
    check_output_dir(out_dir, overwrite)
    parent = out_dir.resolve().parent
    try:
        stage = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=parent))
    except OSError as exc:
        raise UserError(f"{parent}: cannot create the output folder there ({exc.strerror})") from None
    make_public(stage, directory=True)  # mkdtemp makes 0700; a bundle is meant to be copied around
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = None
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=parent))
        os.rmdir(old)
        os.replace(out_dir, old)
    os.replace(stage, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
