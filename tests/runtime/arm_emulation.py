"""Run Python snippets on emulated 64-bit ARM (Raspberry Pi 4 / Pi 5 CPU profiles) from the tests.

The environment (an aarch64 Python 3.11 with the aarch64 onnxruntime + numpy wheels, run through
qemu-user) is built by ``scripts/setup_arm_env.sh``; see that script for how. This module finds it,
brings it up to date, and runs a snippet under ``arm-python`` (or the host Python, for the x86
reference run), returning the arrays the snippet saved to an ``.npz``.

A snippet is Python source that gets ``OUT`` (the ``.npz`` path to write) and ``ARGS`` (a list of
strings) as globals; it runs as a script in its own process. The ARM process sees ``ubdiff_onnx``
of this checkout through a symlink overlay laid out as ``pip install`` lays it out, and nothing
else of the host: no torch, no host site-packages.

Setting up the environment, in order:
  * ``UBDIFF_ARM_SETUP=1``, or the environment already exists: run the setup script (idempotent; a
    complete environment costs about a second: it only refreshes the wheels if the host's
    onnxruntime/numpy version changed and rewrites the wrapper);
  * otherwise, or if the script fails (no Debian mirror, no apt-get, not x86_64...), the caller gets
    a reason to skip with.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SETUP_SCRIPT = ROOT / "scripts" / "setup_arm_env.sh"
PROFILES = {"pi4": "Raspberry Pi 4 (Cortex-A72, QEMU_CPU=cortex-a72, no dotprod)",
            "pi5": "Raspberry Pi 5 (Cortex-A76, QEMU_CPU=cortex-a76, dotprod)"}
SETUP_TIMEOUT_S = 900
RUN_TIMEOUT_S = 600


def env_dir() -> Path:
    """Where the environment lives: the same rule as ``scripts/setup_arm_env.sh``."""
    if os.environ.get("UBDIFF_ARM_ENV"):
        return Path(os.environ["UBDIFF_ARM_ENV"]).expanduser().resolve()
    cache = os.environ.get("UBDIFF_ONNX_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "ubdiff-onnx")
    return (Path(cache).expanduser() / "arm-env").resolve()


@dataclass(frozen=True)
class ArmEnv:
    dest: Path

    @property
    def python(self) -> Path:
        return self.dest / "bin" / "arm-python"


class ArmEnvUnavailable(Exception):
    """The emulated environment cannot be used here; the message says why (a skip reason)."""


def _tail(text: str, n: int = 3) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(lines[-n:]) if lines else "(no output)"


def ensure_env() -> ArmEnv:
    """The ready environment, or :class:`ArmEnvUnavailable` with the reason it is not."""
    dest = env_dir()
    how = f"run `bash scripts/setup_arm_env.sh` (about 40 s and 225 MB in {dest}) or set UBDIFF_ARM_SETUP=1"
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        raise ArmEnvUnavailable(f"ARM emulation recipe needs an x86_64 Linux host, this is {platform.system()} {platform.machine()}")
    if sys.version_info < (3, 11):
        raise ArmEnvUnavailable("the ARM test needs Python >= 3.11 on the host (tomllib)")
    requested = os.environ.get("UBDIFF_ARM_SETUP") == "1"
    exists = (dest / "bin" / "arm-python").is_file()
    if not (requested or exists):
        failed = dest / "SETUP_FAILED"
        if failed.is_file():
            raise ArmEnvUnavailable(f"scripts/setup_arm_env.sh failed earlier: {failed.read_text().strip()} "
                                    f"(fix that, then {how})")
        raise ArmEnvUnavailable(f"no emulated ARM environment in {dest}: {how}")
    env = {**os.environ, "UBDIFF_ARM_SELFTEST": "0", "PY_HOST": sys.executable}
    try:
        proc = subprocess.run(["bash", str(SETUP_SCRIPT), str(dest)], env=env, capture_output=True,
                              text=True, timeout=SETUP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ArmEnvUnavailable(f"scripts/setup_arm_env.sh took more than {SETUP_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        failed = dest / "SETUP_FAILED"
        why = failed.read_text().strip() if failed.is_file() else _tail(proc.stderr + proc.stdout)
        raise ArmEnvUnavailable(f"scripts/setup_arm_env.sh failed: {why}")
    return ArmEnv(dest)


def build_overlay(out: Path, repo: Path = ROOT) -> Path:
    """``out/ubdiff_onnx``: the package as pip installs it (pyproject's package-dir), as symlinks
    into ``repo``; the same layout the setup script makes in DEST/overlay, but private to this run
    so that another checkout sharing the environment cannot swap it underneath."""
    import tomllib  # Python >= 3.11 (ensure_env checks)

    pkg_dirs = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    top = out / "ubdiff_onnx"
    top.mkdir(parents=True)
    src = repo / pkg_dirs.get("ubdiff_onnx", "ubdiff_onnx")
    for entry in src.iterdir():
        if entry.name != "__pycache__":
            (top / entry.name).symlink_to(entry)
    for pkg, d in pkg_dirs.items():
        parts = pkg.split(".")
        if len(parts) == 2 and parts[0] == "ubdiff_onnx" and not (top / parts[1]).exists():
            (top / parts[1]).symlink_to(repo / d)
    return out


_PRELUDE = "import sys, json\nOUT = sys.argv[1]\nARGS = json.loads(sys.argv[2])\n"


class Job:
    """One snippet running in its own process; :meth:`result` waits and loads its ``.npz``."""

    def __init__(self, argv: list[str], env: dict[str, str], out: Path, cwd: Path, label: str) -> None:
        self.out, self.label = out, label
        self.log = out.with_suffix(".log")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)

    def result(self, timeout: float = RUN_TIMEOUT_S) -> dict[str, np.ndarray]:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"{self.label}: still running after {timeout} s; log {self.log}") from None
        if rc != 0 or not self.out.is_file():
            raise AssertionError(f"{self.label}: exit status {rc}:\n{self.log.read_text()[-3000:]}")
        with np.load(self.out) as d:
            return {k: d[k] for k in d.files}


ONNXRUNTIMES = ("host", "floor")  # the ARM env's onnxruntime: the host's version, or MIN_ONNXRUNTIME


def launch(code: str, tmp_path: Path, *, profile: str | None, arm: ArmEnv | None = None,
           args: list[str] | tuple[str, ...] = (), qemu_env: dict[str, str] | None = None,
           onnxruntime: str = "host") -> Job:
    """Start ``code`` under ``arm-python`` with ``ARM_PROFILE=profile``, or under this host Python
    (same environment as the tests) when ``profile`` is None. Its arrays come from :meth:`Job.result`.
    ``qemu_env``: extra ``QEMU_*`` settings for the emulated run (e.g. ``QEMU_LOG=in_asm``).
    ``onnxruntime``: "host" (the host's version) or "floor" (the oldest the runtime supports,
    ``runtime/manifest.py``'s MIN_ONNXRUNTIME, from DEST/site-floor); ARM runs only."""
    if onnxruntime not in ONNXRUNTIMES:
        raise ValueError(f"onnxruntime must be one of {', '.join(ONNXRUNTIMES)}, got {onnxruntime!r}")
    label = (profile or "x86") + ("" if onnxruntime == "host" else f"-{onnxruntime}")
    work = tmp_path / f"run-{label}"
    work.mkdir()
    script = work / "snippet.py"
    script.write_text(_PRELUDE + code)
    out = work / "out.npz"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARM_", "QEMU_"))}
    if profile is None:
        if onnxruntime != "host":
            raise ValueError("the x86 run uses this host's onnxruntime; onnxruntime='floor' is for ARM profiles")
        argv = [sys.executable, str(script)]
    else:
        if profile not in PROFILES:
            raise ValueError(f"profile must be one of {', '.join(PROFILES)}, got {profile!r}")
        if arm is None:
            raise ValueError("an ARM profile needs the environment from ensure_env()")
        if onnxruntime == "floor" and not (arm.dest / "site-floor" / "onnxruntime").is_dir():
            raise ValueError(f"{arm.dest} has no site-floor: rerun scripts/setup_arm_env.sh")
        overlay = tmp_path / "overlay"
        if not overlay.exists():
            build_overlay(overlay)
        # Nothing of the host's Python settings: the wrapper sets PYTHONPATH (site + overlay) itself
        # and keeps bytecode in DEST/pycache, off the repository.
        env = {k: v for k, v in env.items() if not k.startswith("PYTHON")}
        env.update(ARM_PROFILE=profile, ARM_ONNXRUNTIME=onnxruntime, ARM_PYTHONPATH=str(overlay), **(qemu_env or {}))
        argv = [str(arm.python), str(script)]
    return Job(argv + [str(out), json.dumps(list(args))], env, out, work, label)


# AArch64 dot-product instructions (ARMv8.2 DotProd: SDOT/UDOT, vector and by-element forms), as
# raw instruction words: the disassembler of older qemu builds prints them as ``.byte``.
_DOT_FORMS = ((0x9FE0FC00, 0x0E809400),  # SDOT/UDOT Vd.4S, Vn.16B, Vm.16B
              (0x9FC0F400, 0x0F80E000))  # SDOT/UDOT Vd.4S, Vn.16B, Vm.4B[i]


def dot_product_instructions(in_asm_log: Path) -> int:
    """How many SDOT/UDOT instructions qemu translated, from a ``QEMU_LOG=in_asm`` log: each code
    block is translated once, so this counts the distinct dot-product sites the run reached."""
    import re

    word = re.compile(r"^0x[0-9a-f]+:\s+([0-9a-f]{8})\s")
    n = 0
    with open(in_asm_log, errors="replace") as fh:
        for line in fh:
            m = word.match(line)
            if m:
                w = int(m.group(1), 16)
                n += any(w & mask == value for mask, value in _DOT_FORMS)
    return n
