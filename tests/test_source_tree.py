"""A regular (non-editable) install works from any folder, the clone's root included (issue #16).

The install goes into a fresh venv *without* this interpreter's site-packages: an editable install
of the checkout there (as CI makes) maps ``ubdiff_onnx.runtime`` by its own finder and would hide the
shadowing bug. The venv gets the base install only (numpy, onnxruntime, typer, rich: no torch, no
onnx), so the same test shows that ``bench`` — which starts worker processes — runs on a Pi-like
install.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ubdiff_onnx._source_tree import TOP_LEVEL_SUBPACKAGES, is_source_checkout, python_module_command

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def test_python_module_command_leaves_the_working_folder_off_sys_path():
    cmd = python_module_command("ubdiff_onnx", "sample", Path("x"))
    assert cmd[0] == sys.executable and cmd[-3:] == ["ubdiff_onnx", "sample", "x"]
    assert ("-P" in cmd) == (sys.version_info >= (3, 11))


def test_the_checkout_is_recognised():
    assert is_source_checkout(REPO)
    assert not is_source_checkout(REPO / "ubdiff_onnx")
    assert set(TOP_LEVEL_SUBPACKAGES) <= {p.name for p in REPO.iterdir() if (p / "__init__.py").is_file()}


@pytest.fixture(scope="module")
def base_venv(tmp_path_factory) -> Path:
    """A fresh venv holding a wheel of this checkout and its base dependencies only."""
    root = tmp_path_factory.mktemp("install")
    wheels = root / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO)]
    if subprocess.run([*build, "--no-build-isolation"], capture_output=True).returncode != 0:
        subprocess.run(build, check=True, capture_output=True)  # setuptools here lacks bdist_wheel
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    (wheel,) = wheels.glob("ubdiff_onnx-*.whl")
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
                         capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr[-2000:]
    return venv


def _run_in_clone_root(venv: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(list(args), cwd=REPO, capture_output=True, text=True, env=env, timeout=600)


def test_python_m_from_the_clone_root(base_venv):
    """``python -m`` puts the clone's ``ubdiff_onnx/`` first on sys.path: it must still import
    ``runtime`` (the torch-free check module export runs) without torch."""
    py = str(base_venv / "bin" / "python")
    probe = "import sys, ubdiff_onnx.runtime.check, ubdiff_onnx.runtime.sampler; print('torch' in sys.modules)"
    r = _run_in_clone_root(base_venv, py, "-c", probe)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr[-2000:]
    r = _run_in_clone_root(base_venv, py, "-m", "ubdiff_onnx", "--help")
    assert r.returncode == 0 and "bench" in r.stdout, r.stderr[-2000:]
    torch_free = _run_in_clone_root(base_venv, py, "-c", "import importlib.util as u; print(u.find_spec('torch') is None)")
    assert torch_free.stdout.strip() == "True", "the base install must not pull torch"


def test_bench_from_the_clone_root_in_the_base_install(base_venv, tiny_fp32_bundle, tmp_path):
    """``bench`` starts its workers with ``python -m``; from the clone root, with no torch and no onnx."""
    out = tmp_path / "report"
    r = _run_in_clone_root(base_venv, str(base_venv / "bin" / "ubdiff-onnx"), "bench", str(tiny_fp32_bundle), "--threads", "1",
                           "--rounds", "1", "--repeat", "2", "--warmup", "1", "--e2e-repeat", "1", "--steps", "3", "--no-ddpm",
                           "--out", str(out))
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    report = json.loads((out / "bench.json").read_text())
    assert report["results"], report
