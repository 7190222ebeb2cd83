"""Staging folders of killed exports are removed by the next export to the same target — only those
provably its own — and a successful export prints no onnxruntime warnings (issue #16)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ubdiff_onnx.conversion.staging import OWNER_FILE, Owner, remove_stale_stages, staged_dir

KILLED_EXPORT = """
import sys, time
from pathlib import Path
from ubdiff_onnx.conversion.staging import staged_dir
with staged_dir(Path(sys.argv[1])) as stage:
    (stage / "unet").mkdir()
    (stage / "unet" / "model.onnx").write_bytes(b"x" * 100_000)
    print("staged", flush=True)
    time.sleep(600)
"""


def _killed_export(out: Path) -> Path:
    """A real process that stages ``out`` and is killed with SIGKILL mid-export."""
    proc = subprocess.Popen([sys.executable, "-c", KILLED_EXPORT, str(out)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "staged"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    (stage,) = out.parent.glob(f".{out.name}.partial-*")
    return stage


def test_stale_stage_of_a_killed_export_is_removed_and_reported(tmp_path):
    out = tmp_path / "bundle"
    stage = _killed_export(out)
    other_target = _killed_export(tmp_path / "other")
    notes: list[str] = []
    with staged_dir(out, notice=notes.append) as new:
        assert not stage.exists() and new.exists()
        (new / "manifest.json").write_text("{}")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".bundle.")] == []
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"], "the owner record must not ship in the bundle"
    assert len(notes) == 1 and str(stage) in notes[0] and "killed" in notes[0]
    assert other_target.exists(), "another target's staging folder is not this export's business"


def test_stages_that_cannot_be_proven_stale_stay(tmp_path):
    out = tmp_path / "bundle"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        time.sleep(0.2)
        cases = {
            "running": Owner.this_process("bundle").__class__("bundle", socket.gethostname(), live.pid, None, None),
            "this-process": Owner.this_process("bundle"),
            "other-host": Owner("bundle", socket.gethostname() + "-elsewhere", 2**22 + 7, None, None),
        }
        stages = {}
        for name, owner in cases.items():
            stages[name] = tmp_path / f".bundle.partial-{name}"
            stages[name].mkdir()
            owner.write(stages[name])
        unowned = tmp_path / ".bundle.partial-unowned"
        unowned.mkdir()
        (tmp_path / ".bundle.partial-garbled").mkdir()
        (tmp_path / ".bundle.partial-garbled" / OWNER_FILE).write_text("{not json")
        assert remove_stale_stages(out) == []
        assert all(p.exists() for p in stages.values()) and unowned.exists()
    finally:
        live.kill()
        live.wait()
    assert remove_stale_stages(out) == [stages["running"]], "once its process is gone, the stage is provably stale"


def test_reused_pid_and_reboot_count_as_gone(tmp_path):
    me = Owner.this_process("bundle")
    parent = Owner("bundle", me.host, os.getppid(), me.boot_id, None)
    assert not parent.provably_gone(), "a live process with no start time recorded is not provably gone"
    if me.start_ticks is None:
        pytest.skip("no /proc/PID/stat on this system: start times cannot be compared")
    assert Owner("bundle", me.host, os.getppid(), me.boot_id, me.start_ticks + 12345).provably_gone()
    if me.boot_id is not None:
        assert Owner("bundle", me.host, os.getppid(), "another-boot", None).provably_gone()


def test_replaced_bundle_folder_carries_an_owner_record_until_removed(tmp_path):
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with staged_dir(out, overwrite=True) as stage:
        (stage / "new.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]


def test_op_histogram_session_prints_no_onnxruntime_warning(tiny_fp32_bundle, capfd):
    """The internal "all"-level session that counts operators saved its graph with a yellow
    ORT warning on every export; it must stay quiet (C++ stderr is captured at the fd level)."""
    from ubdiff_onnx.conversion.quantize import optimized_op_histogram

    capfd.readouterr()
    hist = optimized_op_histogram(tiny_fp32_bundle / "unet" / "model.onnx")
    err = capfd.readouterr().err
    assert hist and "onnxruntime" not in err, err


def test_cli_export_reports_the_removed_stage(tiny_checkpoint, tmp_path, capfd):
    """Through the CLI, with fd-level capture: the notice is printed, no onnxruntime warning is."""
    out = tmp_path / "bundle"
    stage = _killed_export(out)
    r = subprocess.run([sys.executable, "-m", "ubdiff_onnx", "export", str(tiny_checkpoint), str(out), "--format", "fp32"],
                       capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "COLUMNS": "200"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert not stage.exists() and json.loads((out / "manifest.json").read_text())["precision"] == "fp32"
    assert "removed" in r.stderr and stage.name in r.stderr
    assert "[W:onnxruntime" not in r.stderr and "[W:onnxruntime" not in r.stdout, r.stderr[-2000:]
