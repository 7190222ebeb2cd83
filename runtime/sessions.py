"""onnxruntime session creation shared by the sampler, validation and benchmarks."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort


OPTIMIZATION_LEVELS = {
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def make_session(path: Path, threads: int = 0, optimized_model_path: Path | None = None,
                 optimization: str = "all", quiet: bool = False, config: dict[str, str] | None = None) -> ort.InferenceSession:
    """A CPU session; ``threads`` = 0 lets onnxruntime choose (all physical cores).

    Inter-op parallelism stays at 1: the graphs are chains, and extra pools only cost memory on a Pi.
    ``optimization`` is the graph optimisation level; a bundle's manifest can ask for another than
    "all" per component (the QDQ U-Net: see ``conversion/export_qdq.py``). ``quiet`` keeps
    onnxruntime's warnings off the terminal for internal sessions whose warnings are expected (saving
    an "all"-level graph only to count its operators warns that the file is hardware-specific).
    ``config`` holds session config entries (``int8_host.session_config``: what makes a full-range
    INT8 bundle exact on this CPU).
    """
    if optimization not in OPTIMIZATION_LEVELS:
        raise ValueError(f"unknown graph optimisation level {optimization!r}; expected {', '.join(OPTIMIZATION_LEVELS)}")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = OPTIMIZATION_LEVELS[optimization]
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if quiet:
        opts.log_severity_level = 3  # errors only
    for key, value in (config or {}).items():
        opts.add_session_config_entry(key, value)
    if optimized_model_path is not None:
        opts.optimized_model_filepath = str(optimized_model_path)
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
