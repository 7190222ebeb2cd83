"""Write a bundle folder atomically: build it in a hidden sibling folder, rename at the end.

A killed export (kill -9, power loss) cannot clean up after itself, so every staging folder carries
an owner record (host, boot, pid and the process's start time). The next export to the same target
removes the staging folders whose owner it can *prove* gone — same host, and a reboot since, or no
such process, or another process under the same pid — and leaves every other one alone (another
export may be running into it right now, or it may belong to another machine on a shared disk).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from ubdiff_onnx.errors import UserError
from ubdiff_onnx.runtime.atomic import make_public

OWNER_FILE = ".ubdiff-staging.json"
STAGE_KINDS = ("partial", "old")  # .NAME.partial-<random>: being built; .NAME.old-<random>: the replaced bundle


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


# -- owner records ---------------------------------------------------------------------------------
def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), which tells a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2:].split()[19])  # field 22; the name in (...) may hold spaces


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


@dataclass(frozen=True)
class Owner:
    target: str
    host: str
    pid: int
    boot_id: str | None
    start_ticks: int | None

    @classmethod
    def this_process(cls, target: str) -> "Owner":
        return cls(target, socket.gethostname(), os.getpid(), _boot_id(), _start_ticks(os.getpid()))

    @classmethod
    def read(cls, stage: Path) -> "Owner | None":
        try:
            d = json.loads((stage / OWNER_FILE).read_text())
            return cls(str(d["target"]), str(d["host"]), int(d["pid"]), d.get("boot_id"), d.get("start_ticks"))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write(self, stage: Path) -> None:
        (stage / OWNER_FILE).write_text(json.dumps(self.__dict__) + "\n")

    def provably_gone(self) -> bool:
        """True only when this host can show the owning process no longer exists."""
        if self.host != socket.gethostname():
            return False
        boot = _boot_id()
        if boot is not None and self.boot_id is not None and boot != self.boot_id:
            return True
        if self.pid == os.getpid():
            return False
        if not _pid_alive(self.pid):
            return True
        ticks = _start_ticks(self.pid)
        return ticks is not None and self.start_ticks is not None and ticks != self.start_ticks


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def remove_stale_stages(out_dir: Path, notice: Callable[[str], None] | None = None) -> list[Path]:
    """Remove the staging folders of earlier exports to ``out_dir`` that were killed; say so."""
    out_dir = Path(out_dir)
    parent = out_dir.resolve().parent
    removed = []
    for kind in STAGE_KINDS:
        for stage in sorted(parent.glob(f".{out_dir.name}.{kind}-*")):
            owner = Owner.read(stage) if stage.is_dir() and not stage.is_symlink() else None
            if owner is None or owner.target != out_dir.name or not owner.provably_gone():
                continue
            size = _size(stage)
            shutil.rmtree(stage, ignore_errors=True)
            if not stage.exists():
                removed.append(stage)
                if notice:
                    notice(f"removed {stage} ({size / 2**20:.1f} MiB), left by an earlier export (pid {owner.pid}) that was killed")
    return removed


@contextlib.contextmanager
def staged_dir(out_dir: Path, overwrite: bool = False, notice: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces ``out_dir``, on any error it is removed."""
    out_dir = Path(out_dir)
    check_output_dir(out_dir, overwrite)
    remove_stale_stages(out_dir, notice)
    parent = out_dir.resolve().parent
    owner = Owner.this_process(out_dir.name)
    try:
        stage = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=parent))
        owner.write(stage)
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
        owner.write(old)  # a kill before the rmtree below leaves it provably ours
    (stage / OWNER_FILE).unlink()
    os.replace(stage, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
