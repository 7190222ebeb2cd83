"""Samples per minute of ``ubdiff-onnx data synth`` on this machine (target: ≥ 200/min on 2 cores).

    python benchmarks/synth_throughput.py [--samples 256] [--workers 2] [--family curvefault-a]

Reports the end-to-end rate (worker start-up included, as a user sees it) and the steady-state
rate of the simulation alone (one process, one thread, per core). Other heavy processes on the
machine lower both: check ``uptime`` first.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def steady_state_per_core(family: str, n: int = 16) -> float:
    from ubdiff_onnx.data.forward import forward_model
    from ubdiff_onnx.data.velocity_models import velocity_batch

    vel = velocity_batch(family, 0, 0, n)
    forward_model(vel[:2])  # warm-up
    t0 = time.perf_counter()
    forward_model(vel)
    return 60 * n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--family", default="curvefault-a")
    args = ap.parse_args()

    from ubdiff_onnx.data.synth import synthesize

    print(f"load average before: {os.getloadavg()[0]:.2f} (cores: {os.cpu_count()})")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        synthesize(Path(tmp) / "ds", args.family, args.samples, seed=0, workers=args.workers, progress=False)
        elapsed = time.perf_counter() - t0
    per_core = steady_state_per_core(args.family)
    print(f"synthesize {args.family}: {args.samples} samples, {args.workers} workers, {elapsed:.1f} s "
          f"→ {60 * args.samples / elapsed:.0f} samples/min end to end")
    print(f"simulation alone, 1 process × 1 thread: {per_core:.0f} samples/min per core")


if __name__ == "__main__":
    main()
