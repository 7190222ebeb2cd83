"""Turn expected failures into one clear line and a non-zero exit (never a raw traceback)."""

from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

import typer

from ubdiff_onnx.errors import UserError

F = TypeVar("F", bound=Callable)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` on stderr and return the Exit to raise."""
    first_line = " ".join(str(message).split("\n")).strip()
    print(f"error: {first_line}", file=sys.stderr)
    return typer.Exit(code=code)


def user_errors(fn: F) -> F:
    """Decorator for commands: UserError, missing files, permission problems, Ctrl-C → one line."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            raise fail(str(exc)) from None
        except FileNotFoundError as exc:
            raise fail(f"{exc.filename or exc}: file not found") from None
        except PermissionError as exc:
            raise fail(f"{exc.filename or exc}: permission denied") from None
        except IsADirectoryError as exc:
            raise fail(f"{exc.filename or exc}: is a directory, expected a file") from None
        except KeyboardInterrupt:
            raise fail("interrupted; no partial output was kept", code=130) from None
        except MemoryError:
            raise fail("out of memory; try a smaller --batch-size") from None

    return wrapper  # type: ignore[return-value]
