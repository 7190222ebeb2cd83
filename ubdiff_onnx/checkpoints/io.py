"""Safe, atomic torch file I/O with one-line errors."""

from __future__ import annotations

import argparse
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from ubdiff_onnx.errors import UserError
from ubdiff_onnx.runtime.atomic import atomic_open


def atomic_torch_save(obj: Any, path: Path) -> None:
    """Write to a temporary file in the same folder, then rename: never a half-written checkpoint."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise UserError(f"{parent}: output folder does not exist")
    if not os.access(parent, os.W_OK):
        raise UserError(f"{parent}: output folder is not writable")
    try:
        with atomic_open(path, "wb", fsync=True) as fh:
            torch.save(obj, fh)
    except OSError as exc:
        raise UserError(f"{parent}: cannot write the checkpoint there ({exc.strerror})") from None


def load_torch_file(path: Path, *, trust_pickle: bool = False) -> Any:
    """torch.load with the restricted (weights-only) unpickler, mapped to CPU.

    ``argparse.Namespace`` is allow-listed because the original encoder/decoder checkpoints store
    their training arguments that way; anything else that needs full pickle loading is refused
    unless the user passes ``trust_pickle`` (CLI: ``--trust-pickle``), which runs arbitrary code
    from the file and is only for files the user trusts.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: file not found")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, expected a checkpoint file")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: empty file, expected a torch checkpoint")
    try:
        if trust_pickle:
            return torch.load(path, map_location="cpu", weights_only=False)
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        if "weights_only" in msg or "Unsupported global" in msg or "GLOBAL" in msg:
            first = next((ln.strip() for ln in msg.splitlines() if "Unsupported global" in ln), "it contains Python objects beyond tensors")
            raise UserError(
                f"{path}: refusing to unpickle arbitrary objects ({first}); if you trust this file, re-run with --trust-pickle"
            ) from None
        raise UserError(f"{path}: not a readable torch checkpoint (truncated or corrupt?): {msg.splitlines()[0] if msg else 'unpickling failed'}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, IndexError, KeyError, TypeError, UnicodeDecodeError) as exc:
        # a corrupt file can make the restricted unpickler fail with any of these
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{path}: not a readable torch checkpoint (truncated or corrupt?): {first}") from None
