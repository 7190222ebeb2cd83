"""Time `ubdiff-onnx train RUN --preset tiny --stage all` on the embedded dataset and summarise
per-stage wall time and validation losses from RUN/metrics.jsonl (the issue's 10-minute budget).

    python benchmarks/train_tiny.py /tmp/tiny-run [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import time
from pathlib import Path

from ubdiff_onnx._source_tree import python_module_command
from ubdiff_onnx.training.metrics import read_metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.run_dir.exists():
        shutil.rmtree(args.run_dir)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    cmd = python_module_command("ubdiff_onnx", "train", args.run_dir, "--preset", "tiny", "--stage", "all",
                                "--no-progress", "--threads", args.threads)
    t0 = time.time()
    subprocess.run(cmd, check=True)
    wall = time.time() - t0
    records = read_metrics(args.run_dir / "metrics.jsonl")
    print(f"\nwall time {wall:.0f} s ({wall / 60:.1f} min), 1-min load average at start {load:.2f}")
    for r in (r for r in records if r["kind"] == "stage_done"):
        vals = [v for v in records if v["kind"] == "val" and v["stage"] == r["stage"]]
        phases = dict.fromkeys(v["phase"] for v in vals)
        losses = "; ".join(f"{p}: {[v for v in vals if v['phase'] == p][0]['val_loss']:.4f} → "
                           f"{[v for v in vals if v['phase'] == p][-1]['val_loss']:.4f}" for p in phases)
        print(f"{r['stage']:14s} {r['seconds']:7.0f} s   val loss {losses}")
    for s in (r for r in records if r["kind"] == "samples"):
        print(f"{s['stage']:14s} DDIM-{s['steps']} samples: nearest-latent distance {s['sample_nn']:.3f} "
              f"(data {s['data_nn']:.3f}, matched Gaussian {s['gauss_nn']:.3f}, N(0,1) {s['noise_nn']:.3f})")


if __name__ == "__main__":
    main()
