"""Ctrl-C / SIGTERM: finish the current step, write a checkpoint, then stop.

The handler only sets a flag; the training loop polls it between steps, so a signal never lands in
the middle of an optimizer step or a checkpoint write (and the write is atomic anyway). A second
Ctrl-C raises KeyboardInterrupt at once for users who really want out; the last complete
checkpoint is still intact because files are replaced by rename.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Callable

from ubdiff_onnx.errors import UserError


class TrainingInterrupted(UserError):
    """Raised after the checkpoint of an interrupted run has been written."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class GracefulInterrupt:
    """Context manager that turns SIGINT/SIGTERM into a polled flag (main thread only)."""

    def __init__(self, announce: Callable[[str], None] | None = None) -> None:
        self.signum: int | None = None
        self._announce = announce or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        name = signal.Signals(signum).name
        self._announce(f"{name} received: stopping after this step and writing a checkpoint (Ctrl-C again to abort now)")

    def __enter__(self) -> "GracefulInterrupt":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()
