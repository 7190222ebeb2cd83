"""Ctrl-C on a real `ubdiff-onnx train` process: it checkpoints, exits 130, and --resume finishes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from tests.training.conftest import short_options
from ubdiff_onnx.checkpoints.format import load_checkpoint
from ubdiff_onnx.training import Overrides, train


def test_ctrl_c_mid_run_then_resume(tmp_path, small_fwi):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "ubdiff_onnx", "train", str(run_dir), "--data", str(small_fwi), "--dataset", "curvefault-a",
           "--preset", "tiny", "--stage", "autoencoder", "--epochs", "400", "--steps", "1", "--batch-size", "8",
           "--threads", "1", "--device", "cpu", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (run_dir / "autoencoder.pt").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.time() < deadline, "no checkpoint within 120 s"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "checkpoint saved" in err and "--resume" in err and "Traceback" not in err
    ckpt = load_checkpoint(run_dir / "autoencoder.pt")
    state = ckpt.meta["train_state"]
    assert not ckpt.meta["stage_complete"] and 1 <= state["epoch"] < 400
    assert not list(run_dir.glob(".*.tmp"))

    done = state["epoch"] + (1 if state["step_in_epoch"] == 0 else 0) + 1
    train(short_options(run_dir, small_fwi, stage="autoencoder", resume=True, overrides=Overrides(epochs=done, steps=1, batch_size=8)),
          say=lambda msg: None)
    final = load_checkpoint(run_dir / "autoencoder.pt")
    assert final.meta["stage_complete"] and final.meta["train_state"]["finished"] == {"autoencoder": done}
