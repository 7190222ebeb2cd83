"""The run folder: what ``train`` writes and where ``--resume`` and later stages look.

::

    RUN_DIR/run.json            preset, dataset, data folder, seed, split, per-stage status
    RUN_DIR/<stage>.pt          one checkpoint per stage (our format), rewritten atomically
                                every epoch; meta["train_state"] holds what --resume needs
    RUN_DIR/last.pt             link to the newest stage checkpoint (a copy where links fail)
    RUN_DIR/metrics.jsonl       one JSON record per log line / validation
    RUN_DIR/samples/<stage>.*   decoded DDIM samples after the diffusion stages (npz, png)

Each stage checkpoint is a complete model (``export`` reads it directly); meta["stage_complete"]
tells whether its stage finished.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ubdiff_onnx.checkpoints.format import Checkpoint, load_checkpoint, save_checkpoint
from ubdiff_onnx.errors import UserError
from ubdiff_onnx.runtime.atomic import atomic_write_text

RUN_FORMAT = "ubdiff-onnx-run"


class RunDir:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # -- paths ---------------------------------------------------------------------------------
    def checkpoint(self, stage: str) -> Path:
        return self.root / f"{stage}.pt"

    @property
    def last(self) -> Path:
        return self.root / "last.pt"

    @property
    def info_path(self) -> Path:
        return self.root / "run.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    # -- setup ---------------------------------------------------------------------------------
    def create(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"{self.root}: exists and is not a folder; RUN_DIR must be a folder")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"{self.root}: cannot create the run folder ({exc.strerror})") from None
        if not os.access(self.root, os.W_OK):
            raise UserError(f"{self.root}: run folder is not writable")

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive lock for the duration of a run, so two ``train`` processes never share RUN_DIR."""
        with open(self.root / ".lock", "a+") as fh:
            try:
                import fcntl
            except ImportError:  # pragma: no cover - Windows: no advisory locks
                yield
                return
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise UserError(f"{self.root}: another `ubdiff-onnx train` is using this run folder") from None
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def remove_stale_temporaries(self) -> None:
        """Temp files of a writer that was killed (SIGKILL, power loss) mid-write; the real files
        were never touched because they are only ever replaced by rename."""
        for tmp in self.root.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)

    # -- run.json ------------------------------------------------------------------------------
    def read_info(self) -> dict[str, Any] | None:
        if not self.info_path.exists():
            return None
        try:
            info = json.loads(self.info_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"{self.info_path}: unreadable run record ({exc}); delete it to start the run afresh") from None
        if not isinstance(info, dict) or info.get("format") != RUN_FORMAT:
            raise UserError(f"{self.info_path}: not an ubdiff-onnx run record")
        return info

    def write_info(self, info: dict[str, Any]) -> None:
        atomic_write_text(self.info_path, json.dumps({"format": RUN_FORMAT, "version": 1, **info}, indent=2) + "\n")

    # -- checkpoints ---------------------------------------------------------------------------
    def save(self, stage: str, ckpt: Checkpoint) -> Path:
        path = self.checkpoint(stage)
        save_checkpoint(ckpt, path)
        self._link_last(path)
        return path

    def load(self, stage: str) -> Checkpoint | None:
        path = self.checkpoint(stage)
        return load_checkpoint(path) if path.exists() else None

    def _link_last(self, target: Path) -> None:
        """Point last.pt at ``target`` atomically: a relative symlink, or a copy where links fail."""
        tmp = self.root / f".last.pt.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        try:
            os.symlink(target.name, tmp)
        except (OSError, NotImplementedError):
            shutil.copyfile(target, tmp)
        os.replace(tmp, self.last)
