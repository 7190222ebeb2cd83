"""onnxruntime session creation shared by the sampler, validation and benchmarks."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort


def make_session(path: Path, threads: int = 0, optimized_model_path: Path | None = None) -> ort.InferenceSession:
    """A CPU session; ``threads`` = 0 lets onnxruntime choose (all physical cores).

    Inter-op parallelism stays at 1: the graphs are chains, and extra pools only cost memory on a Pi.
    """
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if optimized_model_path is not None:
        opts.optimized_model_filepath = str(optimized_model_path)
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
