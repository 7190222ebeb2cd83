"""Where does a component's time go? onnxruntime's profiler, summed per op type (and per node).

    python benchmarks/profile_ort.py BUNDLE [--component unet|velocity_decoder|seismic_decoder|all]
                                     [--threads 1] [--calls 50] [--top 12]

Runs the component at batch 1 ``--calls`` times with ``enable_profiling`` (after 5 warm-up calls),
then prints the share of kernel time per op type of the *optimised* graph (QLinearConv, Transpose,
QuantizeLinear, …) and the slowest nodes. Imports numpy + onnxruntime only.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ubdiff_onnx.runtime.manifest import COMPONENTS, read_manifest


def feeds_for(name: str, latent_dim: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    if name == "unet":
        return {"x": rng.standard_normal((1, 1, latent_dim), dtype=np.float32), "t": np.array([100], dtype=np.int64)}
    return {"latent": rng.standard_normal((1, latent_dim), dtype=np.float32)}


def profile(path: Path, feeds: dict[str, np.ndarray], threads: int, calls: int) -> tuple[dict[str, float], dict[str, tuple[str, float]], float]:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    with tempfile.TemporaryDirectory() as tmp:
        opts.enable_profiling = True
        opts.profile_file_prefix = os.path.join(tmp, "prof")
        sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        for _ in range(5):
            sess.run(None, feeds)
        for _ in range(calls):
            sess.run(None, feeds)
        prof = sess.end_profiling()
        events = json.loads(Path(prof).read_text())
    by_op: dict[str, float] = defaultdict(float)
    by_node: dict[str, tuple[str, float]] = {}
    run_us = []
    for ev in events:
        if ev.get("cat") == "Session" and ev.get("name") == "model_run":
            run_us.append(ev["dur"])
        if ev.get("cat") != "Node" or not ev.get("name", "").endswith("_kernel_time"):
            continue
        op = ev.get("args", {}).get("op_name", "?")
        node = ev["name"].removesuffix("_kernel_time")
        by_op[op] += ev["dur"]
        prev = by_node.get(node, (op, 0.0))
        by_node[node] = (op, prev[1] + ev["dur"])
    # profiling covers the warm-up calls too: divide by the number of runs profiled
    n = max(1, len(run_us))
    per_call = {k: v / n / 1000 for k, v in by_op.items()}
    nodes = {k: (op, v / n / 1000) for k, (op, v) in by_node.items()}
    return per_call, nodes, (float(np.median(run_us)) / 1000 if run_us else float("nan"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", type=Path)
    p.add_argument("--component", default="all", choices=("all", *COMPONENTS))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--calls", type=int, default=50)
    p.add_argument("--top", type=int, default=12)
    a = p.parse_args()
    man = read_manifest(a.bundle)
    for name in COMPONENTS if a.component == "all" else (a.component,):
        per_op, nodes, run_ms = profile(man.component_path(name), feeds_for(name, man.latent_dim), a.threads, a.calls)
        total = sum(per_op.values())
        print(f"\n{a.bundle.name} / {name}, {a.threads} thread(s): model_run median {run_ms:.2f} ms, kernels {total:.2f} ms per call")
        print(f"{'op type':<28}{'ms/call':>9}{'share':>8}")
        for op, ms in sorted(per_op.items(), key=lambda kv: -kv[1])[: a.top]:
            print(f"{op:<28}{ms:9.3f}{100 * ms / total:7.1f}%")
        print("slowest nodes:")
        for node, (op, ms) in sorted(nodes.items(), key=lambda kv: -kv[1][1])[:5]:
            print(f"  {ms:7.3f} ms  {op:<20} {node[:70]}")


if __name__ == "__main__":
    main()
