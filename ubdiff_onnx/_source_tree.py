"""Make a source checkout import like the installed package, and start our own Python children.

The installed layout maps ``qat/``, ``conversion/`` and ``runtime/`` (top of the repository) to
``ubdiff_onnx.qat`` etc. (``pyproject.toml``'s ``package-dir``). A process started in a clone's root
with ``python -m ...`` finds the clone's ``ubdiff_onnx/`` first on ``sys.path`` (Python prepends the
working folder), which has no such subfolders: every import of ``ubdiff_onnx.runtime`` failed there,
whether the project was installed regularly or not (issue #16). Two measures, both needed:

- :func:`map_source_subpackages` — when ``ubdiff_onnx`` is imported from a source checkout, a meta
  path finder maps the three subpackages to the checkout's top-level folders, exactly as
  ``package-dir`` does. Nothing happens for an installed copy (no ``pyproject.toml`` beside it).
- :func:`python_module_command` — the children we start (export validation, bench workers,
  quickstart steps) run ``python -P -m``: on Python ≥ 3.11 the working folder is not prepended, so
  a child imports the same installed package as the command that started it, whatever the folder.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from pathlib import Path

TOP_LEVEL_SUBPACKAGES = ("qat", "conversion", "runtime")


class _SourceTreeFinder(importlib.abc.MetaPathFinder):
    """Finds ``ubdiff_onnx.<sub>`` in ``<checkout>/<sub>`` for the three top-level subpackages."""

    def __init__(self, package: str, root: Path) -> None:
        self.folders = {f"{package}.{sub}": root / sub for sub in TOP_LEVEL_SUBPACKAGES}

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001 - importlib's signature
        folder = self.folders.get(fullname)
        if folder is None:
            return None
        return importlib.util.spec_from_file_location(fullname, folder / "__init__.py", submodule_search_locations=[str(folder)])


def is_source_checkout(root: Path) -> bool:
    return (root / "pyproject.toml").is_file() and all((root / sub / "__init__.py").is_file() for sub in TOP_LEVEL_SUBPACKAGES)


def map_source_subpackages(package: str, init_file: str) -> None:
    """Install the finder when ``package`` was imported from a checkout (idempotent)."""
    root = Path(init_file).resolve().parent.parent
    if not is_source_checkout(root):
        return
    if any(isinstance(f, _SourceTreeFinder) for f in sys.meta_path):
        return
    # Before the path finder: ubdiff_onnx.__path__ (the checkout's ubdiff_onnx/) cannot hold them.
    sys.meta_path.insert(0, _SourceTreeFinder(package, root))


def python_module_command(module: str, *args: str) -> list[str]:
    """``[python, -P, -m, module, *args]``: a child that imports what this process imported, from any
    folder (``-P``, Python ≥ 3.11: no working folder on ``sys.path``; older Pythons rely on the finder)."""
    safe_path = ["-P"] if sys.version_info >= (3, 11) else []
    return [sys.executable, *safe_path, "-m", module, *map(str, args)]
