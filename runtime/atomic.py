"""Atomic file writing, shared by every part of the project that writes results.

Write to a temporary name in the destination folder, then rename: a reader (or a crash) never sees
a half-written file. Temporary files and folders made by ``tempfile`` are private (0600/0700); the
final file gets the permissions the user's umask asks for.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_public(path: Path, directory: bool = False) -> None:
    """chmod a tempfile-made file (0600) or folder (0700) to what the umask allows."""
    os.chmod(path, (0o777 if directory else 0o666) & ~umask())


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "wb", fsync: bool = False) -> Iterator[IO]:
    """Yield a handle on a temporary sibling of ``path``; rename it to ``path`` on success only."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        make_public(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_open(path, "w") as fh:
        fh.write(text)
