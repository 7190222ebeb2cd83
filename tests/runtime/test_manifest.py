"""runtime/manifest.py: the onnxruntime versions a bundle runs on (issue 23).

The floor and the exclusion were measured on the emulated Pi 4 / Pi 5 (docs/runtime.md); the
runtime's check and pyproject.toml's dependency must say the same thing, or pip installs a version
the runtime then refuses (or the reverse).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from ubdiff_onnx.runtime.manifest import EXCLUDED_ONNXRUNTIME, MIN_ONNXRUNTIME, onnxruntime_problem, version_tuple

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = {"min_onnxruntime": MIN_ONNXRUNTIME, "excluded_onnxruntime": sorted(EXCLUDED_ONNXRUNTIME)}


def test_pyproject_dependency_says_what_the_runtime_checks():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (ort,) = [d for d in deps if re.match(r"onnxruntime\b", d)]
    spec = set(ort.removeprefix("onnxruntime").replace(" ", "").split(","))
    assert spec == {f">={MIN_ONNXRUNTIME}", *(f"!={v}" for v in EXCLUDED_ONNXRUNTIME)}, ort


@pytest.mark.parametrize("version", ["1.19.2", "1.20.0", "1.20.1", "1.21.1", "1.22.0", "1.32.0", "1.22.0+cpu"])
def test_supported_versions_are_accepted(version):
    assert onnxruntime_problem(version, BUNDLE) is None


@pytest.mark.parametrize("version, words", [
    ("1.19.0", "needs onnxruntime >= 1.19.2, this is 1.19.0"),
    ("1.18.1", "needs onnxruntime >= 1.19.2"),
    ("1.21.0", "onnxruntime 1.21.0 is excluded (its aarch64 wheel dies"),
])
def test_older_and_excluded_versions_are_refused(version, words):
    assert words in onnxruntime_problem(version, BUNDLE)


def test_bundles_from_before_the_exclusion_list():
    """They record their own floor (1.22.0) and no exclusions: the floor still holds, and the
    runtime's own exclusions apply whatever the bundle says."""
    assert "needs onnxruntime >= 1.22.0" in onnxruntime_problem("1.21.1", {"min_onnxruntime": "1.22.0"})
    assert "excluded" in onnxruntime_problem("1.21.0", {})
    assert onnxruntime_problem("1.20.1", {}) is None


def test_version_tuple():
    assert version_tuple("1.19.2") == (1, 19, 2) and version_tuple("1.22.0+cpu") == (1, 22, 0)
    assert version_tuple("1.21.0.dev20250301") == (1, 21, 0)
