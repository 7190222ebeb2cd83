"""The component runners the sampler drives: onnxruntime sessions (the Pi path) or TorchScript
modules (for comparisons; imports torch, lazily, only when asked for)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from ubdiff_onnx.runtime.int8_host import session_config
from ubdiff_onnx.runtime.manifest import COMPONENTS, BundleError, Manifest
from ubdiff_onnx.runtime.sessions import make_session

RUNTIMES = ("onnxruntime", "torchscript")


class Component(Protocol):
    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray: ...


BATCHED_UNET_MIN_BATCH = 8
"""From this batch size on, the rule runs the U-Net on onnxruntime's whole pool (see component_threads)."""


def component_threads(name: str, threads: int, batch: int = 1) -> int:
    """Intra-op threads of one component's session (``name``: unet, velocity_decoder, seismic_decoder)
    for calls of ``batch`` samples; 0 means onnxruntime's default pool (one thread per physical core).

    ``threads`` > 0 fixes every session. ``0`` (the default) is the measured rule: one thread for
    every component, except U-Net calls of ``BATCHED_UNET_MIN_BATCH`` or more samples, which use the
    pool. A batch-1 INT8 U-Net step takes a few ms and a pool's hand-offs cost more than a second
    thread saves; at batch 8 its convolutions are big enough to split (DDIM-50 at batch 8 on a quiet
    2-core machine: 199 ms per sample with 2 threads against 228 ms with 1). The decoders gained
    nothing measurable from a second thread. docs/sampling.md ("Threads") has the measurements.
    """
    if threads > 0:
        return threads
    if name == "unet" and batch >= BATCHED_UNET_MIN_BATCH:
        return 0
    return 1


class OrtComponent:
    """One component's onnxruntime session(s). Under the per-component rule (``threads`` = 0) a
    component whose thread count depends on the batch size gets a second session, made on first
    use, for the large batches (the U-Net: a few MB more, only when such batches are run)."""

    def __init__(self, path: Path, want_in: list[str], want_out: list[str], threads: int, optimization: str = "all",
                 name: str = "", config: dict[str, str] | None = None) -> None:
        self.path, self.want_in, self.want_out, self.optimization = path, want_in, want_out, optimization
        self.config = dict(config or {})
        self.name, self.threads = name, threads
        self.sessions = {component_threads(name, threads): self._session(component_threads(name, threads))}

    def _session(self, threads: int):
        try:
            session = make_session(self.path, threads, optimization=self.optimization, config=self.config)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BundleError(f"{self.path}: onnxruntime cannot load it: {str(exc).splitlines()[0]}") from None
        got_in = [i.name for i in session.get_inputs()]
        got_out = [o.name for o in session.get_outputs()]
        if got_in != self.want_in or got_out != self.want_out:
            raise BundleError(f"{self.path}: ONNX I/O {got_in}->{got_out} does not match the manifest {self.want_in}->{self.want_out}")
        return session

    @property
    def session(self):
        """The session for batch-1 calls (what tests and tools that inspect a session look at)."""
        return self.sessions[component_threads(self.name, self.threads)]

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        batch = int(next(iter(feeds.values())).shape[0])
        n = component_threads(self.name, self.threads, batch)
        if n not in self.sessions:
            self.sessions[n] = self._session(n)
        return self.sessions[n].run(None, feeds)[0]


class TorchScriptComponent:
    def __init__(self, path: Path, want_in: list[str], threads: int) -> None:
        import torch

        if threads > 0:
            torch.set_num_threads(threads)
        self._torch = torch
        self.inputs = want_in
        try:
            self.module = torch.jit.load(str(path), map_location="cpu").eval()
        except Exception as exc:  # torch.jit raises RuntimeError subclasses
            raise BundleError(f"{path}: torch.jit cannot load it: {str(exc).splitlines()[0]}") from None

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        with self._torch.inference_mode():
            return self.module(*(self._torch.from_numpy(feeds[n]) for n in self.inputs)).numpy()


def load_components(manifest: Manifest, runtime: str = "onnxruntime", threads: int = 0) -> dict[str, Component]:
    is_ts = manifest.precision.startswith("torchscript")
    if runtime not in RUNTIMES:
        raise BundleError(f"unknown runtime {runtime!r}; expected one of {', '.join(RUNTIMES)}")
    if is_ts != (runtime == "torchscript"):
        kind = "a TorchScript" if is_ts else "an ONNX"
        raise BundleError(f"{manifest.root}: {kind} bundle ({manifest.precision}); use --runtime {'torchscript' if is_ts else 'onnxruntime'}")
    config = session_config(manifest.data, str(manifest.root))  # full-range INT8 on a CPU whose kernels saturate
    out: dict[str, Component] = {}
    for name in COMPONENTS:
        comp = manifest.component(name)
        path = manifest.component_path(name)
        if is_ts:
            out[name] = TorchScriptComponent(path, list(comp["inputs"]), threads)
        else:
            out[name] = OrtComponent(path, list(comp["inputs"]), list(comp["outputs"]), threads, manifest.graph_optimization(name), name,
                                     config)
    return out
