"""The base install runs on Python 3.9 (Raspberry Pi OS Bullseye, the DAC 2025 Pi 4 image): issue 23.

Three checks, from cheapest to strongest:
- ``vermin`` (pinned in the test extra) finds no 3.10+ syntax or standard-library use in the
  installed package (``ubdiff_onnx`` + ``runtime``, ``qat``, ``conversion``). It does not evaluate
  annotations: with ``from __future__ import annotations`` ``int | None`` there is fine on 3.9;
- but typer evaluates the annotations of every CLI command when it builds the app (any
  ``ubdiff-onnx ...`` call builds all of them), so those must not use ``X | Y``: checked here on the
  host Python from the annotation strings;
- a real Python 3.9 (``UBDIFF_PYTHON39``, ``python3.9`` on PATH, pyenv's 3.9, /usr/bin/python3.9):
  ``pip install`` of a wheel of this checkout into a fresh venv resolves (onnxruntime 1.19.2 there),
  ``ubdiff-onnx sample`` runs on the tiny FP32 and QDQ bundles and ``data check`` on a dataset, and
  ``pip install '...[train]'`` fails naming the Python it needs. Skips, saying why, without one.
"""

from __future__ import annotations

import ast
import glob
import inspect
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE_DIRS = ["ubdiff_onnx", "runtime", "qat", "conversion"]


def test_vermin_finds_nothing_newer_than_python39():
    pytest.importorskip("vermin", reason="vermin is not installed: pip install -e '.[test]' (CI installs it)")
    r = subprocess.run([sys.executable, "-c", "import sys, vermin; sys.exit(vermin.main())", "--no-tips", "--target=3.9-", "--violations", "--no-eval-annotations",
                        *PACKAGE_DIRS], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]


def _commands(app):
    for info in app.registered_commands:
        yield info.callback
    for group in app.registered_groups:
        yield from _commands(group.typer_instance)


def test_cli_annotations_evaluate_on_python39():
    from ubdiff_onnx.cli.main import app

    bad = []
    for fn in _commands(app):
        for name, param in inspect.signature(fn).parameters.items():
            text = param.annotation if isinstance(param.annotation, str) else ""
            if any(isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr) for node in ast.walk(ast.parse(text or "None", mode="eval"))):
                bad.append(f"{fn.__module__}.{fn.__name__}({name}: {text})")
    assert not bad, "typer evaluates these on Python 3.9, where X | Y fails; use Optional[X] / Union[X, Y]: " + "; ".join(bad)


def find_python39() -> str | None:
    candidates = [os.environ.get("UBDIFF_PYTHON39"), shutil.which("python3.9"), "/usr/bin/python3.9",
                  *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.9*/bin/python3.9")), reverse=True)]
    for exe in filter(None, candidates):
        try:
            r = subprocess.run([exe, "-c", "import sys, venv; print(sys.version_info[:2] == (3, 9))"], capture_output=True, text=True, timeout=60)
        except OSError:
            continue
        if r.stdout.strip() == "True":
            return exe
    return None


@pytest.fixture(scope="module")
def venv39(tmp_path_factory) -> Path:
    """A fresh Python 3.9 venv with a wheel of this checkout, installed by pip with its dependencies."""
    exe = find_python39()
    if exe is None:
        pytest.skip("no Python 3.9 here (set UBDIFF_PYTHON39, or install one: pyenv install 3.9); the vermin test still checks the code")
    root = tmp_path_factory.mktemp("py39")
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(root / "wheels"), str(REPO)]
    if subprocess.run([*build, "--no-build-isolation"], capture_output=True).returncode != 0:
        subprocess.run(build, check=True, capture_output=True)
    subprocess.run([exe, "-m", "venv", str(root / "venv")], check=True)
    (wheel,) = (root / "wheels").glob("ubdiff_onnx-*.whl")
    venv = root / "venv"
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
                         capture_output=True, text=True, timeout=900)
    assert pip.returncode == 0, pip.stderr[-3000:]
    (venv / "wheel").write_text(str(wheel))
    return venv


def _run(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.slow
def test_sample_and_data_check_on_python39(venv39, tiny_fp32_bundle, tiny_qdq_bundle, small_dataset, tmp_path):
    from ubdiff_onnx.runtime.manifest import MIN_ONNXRUNTIME

    py = str(venv39 / "bin" / "python")
    probe = _run(venv39, py, "-c", "import sys, json, onnxruntime, numpy; print(json.dumps([sys.version_info[:2], onnxruntime.__version__, "
                                   "__import__('importlib.util').util.find_spec('torch') is None]))", cwd=tmp_path)
    version, ort_version, no_torch = json.loads(probe.stdout)
    assert version == [3, 9] and no_torch, probe.stdout + probe.stderr
    assert ort_version == MIN_ONNXRUNTIME, f"pip chose onnxruntime {ort_version} on Python 3.9; the floor is {MIN_ONNXRUNTIME}"
    for bundle in (tiny_fp32_bundle, tiny_qdq_bundle):
        out = tmp_path / f"{bundle.name}.npz"
        r = _run(venv39, str(venv39 / "bin" / "ubdiff-onnx"), "sample", str(bundle), "--num-samples", "2", "--steps", "4",
                 "--seed", "0", "--threads", "1", "--out", str(out), cwd=tmp_path)
        assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
        with np.load(out) as d:
            assert d["velocity"].shape == (2, 1, 70, 70) and np.isfinite(d["seismic"]).all()
    r = _run(venv39, str(venv39 / "bin" / "ubdiff-onnx"), "data", "check", str(small_dataset), cwd=tmp_path)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]


@pytest.mark.slow
def test_train_extra_on_python39_names_the_python_it_needs(venv39, tmp_path):
    wheel = (venv39 / "wheel").read_text()
    r = _run(venv39, str(venv39 / "bin" / "python"), "-m", "pip", "install", "--dry-run", "--disable-pip-version-check",
             f"ubdiff-onnx[train] @ file://{wheel}", cwd=tmp_path)
    assert r.returncode != 0
    errors = [line for line in r.stderr.splitlines() if line.startswith("ERROR")]
    assert errors and all("ubdiff-onnx-train-requires-python-3.10" in line and 'python_version < "3.10"' in line for line in errors), r.stderr[-3000:]
