"""Fixtures for the data tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.data._folders import write_folder


@pytest.fixture
def fake_folder(tmp_path: Path) -> Path:
    return write_folder(tmp_path / "fwi", [("data1.npy", "model1.npy"), ("data2.npy", "model2.npy")], [3, 2])
