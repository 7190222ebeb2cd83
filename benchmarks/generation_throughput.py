"""Throughput of `sample --layout openfwi` (DDIM + decode + OpenFWI files on disk), in samples/s.

For each batch size and each layout of the machine's cores — P processes × T onnxruntime threads,
the processes splitting the files as shards do — every process creates its sampler and warms it
up, all start together, and the rate is all samples / the slowest process's time. The numbers are
the same code path as the command (``runtime.openfwi_writer.write_file``), minus session start-up.

Usage: python benchmarks/generation_throughput.py BUNDLE OUT_DIR [--samples=32] [--sampler=unipc]
       [--steps=10] [--batches=1,8,16] [--layouts=1x0,1x1,1x2,2x1] [--rounds=1]
(sampler and steps default to ``sample``'s; threads 0 = the per-component rule, as ``--threads 0``)
Writes OUT_DIR/throughput.json and prints a Markdown table; a paper QDQ bundle from seeded random
weights is made with ``benchmarks/export_sizes.py`` (its timing does not depend on the weights).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import sys
import time
from pathlib import Path


def _worker(bundle: str, out: str, threads: int, batch: int, sampler: str, steps: int, numbers: list[int], samples: int, per_file: int, barrier, results) -> None:
    import numpy as np

    from ubdiff_onnx.runtime.openfwi_writer import Recipe, write_file
    from ubdiff_onnx.runtime.sampler import BundleSampler
    from ubdiff_onnx.runtime.shards import plan_files

    smp = BundleSampler(Path(bundle), threads=threads, verify=False)
    for _ in smp.sample(batch, sampler="ddim", steps=2, seed=99, batch_size=batch):  # warm-up: allocations and kernel choices
        pass
    files = [f for f in plan_files(samples, per_file) if f.number in numbers]
    recipe = Recipe(sampler, steps, seed=0, batch_size=batch)
    barrier.wait()
    t0, c0 = time.perf_counter(), time.process_time()
    for f in files:
        write_file(smp, Path(out), f, recipe, np.dtype("float32"))
    results.put((time.perf_counter() - t0, time.process_time() - c0, sum(f.samples for f in files)))


def measure(bundle: Path, work: Path, procs: int, threads: int, batch: int, sampler: str, steps: int, samples: int) -> tuple[float, float]:
    """(samples/s of all processes together, CPU seconds per sample)."""
    from ubdiff_onnx.runtime.shards import plan_files, shard_files

    out = work / f"run-{procs}x{threads}-b{batch}"
    shutil.rmtree(out, ignore_errors=True)
    (out / "seismic_data").mkdir(parents=True)
    (out / "velocity_map").mkdir()
    per_file = samples // 2  # two files: one per process when there are two
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(procs), ctx.Queue()
    jobs = []
    for k in range(1, procs + 1):
        numbers = [f.number for f in shard_files(plan_files(samples, per_file), (k, procs))]
        p = ctx.Process(target=_worker, args=(str(bundle), str(out), threads, batch, sampler, steps, numbers, samples, per_file, barrier, results))
        p.start()
        jobs.append(p)
    got = [results.get() for _ in jobs]
    for p in jobs:
        p.join()
    shutil.rmtree(out, ignore_errors=True)
    return samples / max(g[0] for g in got), sum(g[1] for g in got) / samples


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    opts = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--"))
    bundle, work = Path(args[0]), Path(args[1])
    from ubdiff_onnx.runtime.multistep import DEFAULT_SAMPLER, default_steps

    sampler = opts.get("sampler", DEFAULT_SAMPLER)
    samples, steps, rounds = int(opts.get("samples", 32)), int(opts.get("steps", default_steps(sampler, 256))), int(opts.get("rounds", 1))
    batches = [int(b) for b in opts.get("batches", "1,8,16").split(",")]
    layouts = [tuple(int(x) for x in lay.split("x")) for lay in opts.get("layouts", "1x0,1x1,1x2,2x1").split(",")]
    work.mkdir(parents=True, exist_ok=True)

    from ubdiff_onnx.bench.machine import machine_info

    rows = []
    for batch in batches:
        for procs, threads in layouts:
            got = [measure(bundle, work, procs, threads, batch, sampler, steps, samples) for _ in range(rounds)]
            rate, cpu = max(got)
            rows.append({"batch": batch, "processes": procs, "threads": threads, "samples_per_s": rate, "cpu_s_per_sample": cpu,
                         "rounds": got, "load_average": os.getloadavg()})
            print(f"batch {batch:>2}  {procs} proc × {threads} thr: {rate:.2f} samples/s, {cpu:.3f} CPU s/sample  (load {os.getloadavg()[0]:.1f})", flush=True)
    report = {"bundle": str(bundle), "samples": samples, "steps": steps, "sampler": sampler, "machine": machine_info(), "rows": rows}
    (work / "throughput.json").write_text(json.dumps(report, indent=1) + "\n")
    print("\nsamples/s (CPU s per sample)\n| batch | " + " | ".join(f"{p} proc × {t} thread" for p, t in layouts) + " |")
    print("|---:|" + "---:|" * len(layouts))
    for batch in batches:
        cells = [next(r for r in rows if r["batch"] == batch and (r["processes"], r["threads"]) == lay) for lay in layouts]
        print(f"| {batch} | " + " | ".join(f"{c['samples_per_s']:.2f} ({c['cpu_s_per_sample']:.3f})" for c in cells) + " |")


if __name__ == "__main__":
    main()
