"""Run a snippet on each onnxruntime INT8 kernel family reachable from this host.

Families: ``native`` (this host's CPU, as it is), ``haswell`` (x86-64 with AVX2 and no AVX-512 /
VNNI: this host's Python under ``qemu-x86_64 -cpu Haswell``, qemu-user >= 7.2, the first to
emulate AVX2), ``pi4`` / ``pi5`` (emulated aarch64 Raspberry Pi profiles, ``arm_emulation.py``).
Snippets follow ``arm_emulation``'s convention (globals ``OUT`` and ``ARGS``; save arrays to OUT).
An emulated run says nothing about speed: use it for numbers only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.runtime.arm_emulation import _PRELUDE, PROFILES, ArmEnvUnavailable, Job, ensure_env, launch
from ubdiff_onnx.runtime.int8_host import AVX2_ONLY_FLAGS, FLAGS_ENV, QEMU_HASWELL_CPU

FAMILIES = ("native", "haswell", *PROFILES)
QEMU_X86 = ("qemu-x86_64", "qemu-x86_64-static")


class FamilyUnavailable(Exception):
    """The family cannot be run here; the message is the skip reason."""


def qemu_x86() -> str:
    """Path of a qemu-user x86_64 >= 7.2, or :class:`FamilyUnavailable` saying why not."""
    exe = next((p for p in map(shutil.which, QEMU_X86) if p), None)
    if exe is None:
        raise FamilyUnavailable("qemu-x86_64 not found: install qemu-user >= 7.2 (Debian 12: `apt-get install qemu-user`)")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"version (\d+)\.(\d+)", out)
    if not m or (int(m.group(1)), int(m.group(2))) < (7, 2):
        raise FamilyUnavailable(f"{exe} is {out.splitlines()[0] if out else 'of unknown version'}; AVX2 emulation needs >= 7.2")
    return exe


def check_available(family: str) -> None:
    if family == "haswell":
        qemu_x86()
    elif family in PROFILES:
        try:
            ensure_env()
        except ArmEnvUnavailable as exc:
            raise FamilyUnavailable(f"emulated ARM unavailable: {exc}") from None
    elif family != "native":
        raise ValueError(f"unknown family {family!r}; expected one of {', '.join(FAMILIES)}")


def launch_family(code: str, tmp_path: Path, family: str, args: list[str] | tuple[str, ...] = ()) -> Job:
    """Start ``code`` on ``family`` (check :func:`check_available` first); results via ``Job.result``."""
    if family == "native":
        return launch(code, tmp_path, profile=None, args=args)
    if family in PROFILES:
        return launch(code, tmp_path, profile=family, arm=ensure_env(), args=args)
    work = tmp_path / f"run-{family}"
    work.mkdir()
    script = work / "snippet.py"
    script.write_text(_PRELUDE + code)
    out = work / "out.npz"
    env = {k: v for k, v in os.environ.items() if not k.startswith("QEMU_")}
    # The emulated process reads the host's /proc/cpuinfo; tell the runtime's INT8 host check what it runs on.
    env[FLAGS_ENV] = AVX2_ONLY_FLAGS
    argv = [qemu_x86(), "-cpu", QEMU_HASWELL_CPU, sys.executable, str(script), str(out), json.dumps(list(args))]
    return Job(argv, env, out, work, family)
