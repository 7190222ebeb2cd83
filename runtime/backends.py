"""The component runners the sampler drives: onnxruntime sessions (the Pi path) or TorchScript
modules (for comparisons; imports torch, lazily, only when asked for)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from ubdiff_onnx.runtime.int8_host import check_host
from ubdiff_onnx.runtime.manifest import COMPONENTS, BundleError, Manifest
from ubdiff_onnx.runtime.sessions import make_session

RUNTIMES = ("onnxruntime", "torchscript")


class Component(Protocol):
    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray: ...


def component_threads(name: str, threads: int) -> int:
    """Intra-op threads of one component's session (``name``: unet, velocity_decoder, seismic_decoder).

    ``threads`` > 0 fixes every session. ``0`` (the default) is the measured rule: one thread for
    every component. A batch-1 INT8 U-Net step takes a few ms and a pool's hand-offs cost more than
    a second thread saves; the decoders gained nothing measurable from a second thread either, and
    every 2-thread pool lost up to 2x whenever other processes shared the cores (a Pi running
    anything else, our shared CI machines). docs/sampling.md ("Threads") has the measurements; the
    rule is per component so that a component that does gain can be given more.
    """
    if threads > 0:
        return threads
    return 1


class OrtComponent:
    def __init__(self, path: Path, want_in: list[str], want_out: list[str], threads: int, optimization: str = "all") -> None:
        try:
            self.session = make_session(path, threads, optimization=optimization)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BundleError(f"{path}: onnxruntime cannot load it: {str(exc).splitlines()[0]}") from None
        got_in = [i.name for i in self.session.get_inputs()]
        got_out = [o.name for o in self.session.get_outputs()]
        if got_in != want_in or got_out != want_out:
            raise BundleError(f"{path}: ONNX I/O {got_in}->{got_out} does not match the manifest {want_in}->{want_out}")

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(None, feeds)[0]


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
    check_host(manifest.data, str(manifest.root))  # INT8 kernels that saturate on this CPU: refuse
    out: dict[str, Component] = {}
    for name in COMPONENTS:
        comp = manifest.component(name)
        path = manifest.component_path(name)
        if is_ts:
            out[name] = TorchScriptComponent(path, list(comp["inputs"]), threads)
        else:
            out[name] = OrtComponent(path, list(comp["inputs"]), list(comp["outputs"]), component_threads(name, threads),
                                     manifest.graph_optimization(name))
    return out
