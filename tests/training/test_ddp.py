"""DDP with no code change: the same command under torchrun, 2 gloo processes on CPU."""

from __future__ import annotations

import os
import subprocess
import sys

from ubdiff_onnx.checkpoints.format import load_checkpoint
from ubdiff_onnx.training import STAGES


def test_torchrun_two_gloo_processes_run_every_stage(tmp_path, small_fwi):
    run_dir = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "ubdiff_onnx", "train", str(run_dir), "--data", str(small_fwi), "--dataset", "curvefault-a",
           "--preset", "tiny", "--stage", "all", "--epochs", "1", "--steps", "1", "--batch-size", "8",
           "--device", "cpu", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for stage in STAGES:
        ckpt = load_checkpoint(run_dir / f"{stage}.pt")
        assert ckpt.meta["stage_complete"] and ckpt.meta["world_size"] == 2
    assert proc.stdout.count("last.pt") == 1  # one summary, from rank 0
    assert load_checkpoint(run_dir / "qat-diffusion.pt").qat["components"] == ["velocity", "seismic", "unet"]
