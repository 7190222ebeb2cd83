"""The default dataset: made on first use, from a fixed seed, into the user's cache, then reused.

OpenFWI itself cannot be downloaded everywhere, yet the quickstart and the tests need paired data.
256 curvefault-a samples take well under a minute on 2 cores. A file lock serialises concurrent
first uses (two processes never both generate), and the atomic rename in :func:`synthesize` means a
reader only ever sees a complete folder.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from ubdiff_onnx.data.synth import GENERATOR_VERSION, read_metadata, synthesize

EMBEDDED_FAMILY = "curvefault-a"
EMBEDDED_SEED = 20250301
DEFAULT_SAMPLES = 256
CACHE_ENV = "UBDIFF_ONNX_CACHE"


def cache_dir() -> Path:
    """``$UBDIFF_ONNX_CACHE``, else ``$XDG_CACHE_HOME/ubdiff-onnx``, else ``~/.cache/ubdiff-onnx``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "ubdiff-onnx"


def embedded_path(samples: int = DEFAULT_SAMPLES) -> Path:
    return cache_dir() / f"embedded-{EMBEDDED_FAMILY}-seed{EMBEDDED_SEED}-n{samples}-v{GENERATOR_VERSION}"


def _is_complete(folder: Path, samples: int) -> bool:
    try:
        meta = read_metadata(folder)
    except Exception:
        return False
    return bool(
        meta
        and meta.get("family") == EMBEDDED_FAMILY
        and meta.get("seed") == EMBEDDED_SEED
        and meta.get("samples") == samples
        and meta.get("generator_version") == GENERATOR_VERSION
    )


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock (POSIX flock); elsewhere the atomic rename alone protects the data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            yield
            return
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def embedded_dataset(samples: int = DEFAULT_SAMPLES, workers: Optional[int] = None, progress: bool = True) -> Path:
    """Path of the embedded OpenFWI-format dataset, generating it first if needed."""
    target = embedded_path(samples)
    if _is_complete(target, samples):
        return target
    with _file_lock(target.with_name(target.name + ".lock")):
        if not _is_complete(target, samples):  # another process may have finished meanwhile
            synthesize(target, EMBEDDED_FAMILY, samples, EMBEDDED_SEED, workers, overwrite=True, progress=progress)
    return target
