"""Fixtures of the runtime tests: the emulated Raspberry Pi environment (tests/runtime/arm_emulation.py)."""

from __future__ import annotations

import pytest

from tests.runtime.arm_emulation import ArmEnvUnavailable, ensure_env


@pytest.fixture(scope="session")
def arm_env():
    """The emulated aarch64 Python, or a skip that says why it is unavailable."""
    try:
        return ensure_env()
    except ArmEnvUnavailable as exc:
        pytest.skip(f"emulated ARM unavailable: {exc}")
