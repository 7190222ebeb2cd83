"""FP32 ONNX export of the three components into a bundle (SPEC §4), validated against torch.

``torch.onnx.export(dynamo=True)`` at opset 18 with a dynamic batch axis; eval-mode BatchNorm is
folded by the exporter's optimiser, and ``simplify.py`` removes the exporter's per-node leftovers
(shape re-derivations, expand_as, split affines) that cost time at batch 1. After export every file
is checked with ``onnx.checker`` and run by onnxruntime in a torch-free subprocess on fixed inputs
(U-Net at several timesteps).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ubdiff_onnx.conversion.components import component_modules
from ubdiff_onnx.conversion.simplify import simplify_file_
from ubdiff_onnx.runtime.manifest import COMPONENTS, io_spec

OPSET = 18


@contextlib.contextmanager
def _quiet_exporter():
    """The dynamo exporter prints pages of progress and deprecation chatter; keep the CLI readable."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch._dynamo", "torch.export", "onnxscript", "torch.fx")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


def export_component(name: str, module: nn.Module, latent_dim: int, path: Path) -> None:
    """Export one component with the fixed I/O names of SPEC §4 and a dynamic batch axis."""
    spec = io_spec(latent_dim)[name]
    in_names, out_names = list(spec["inputs"]), list(spec["outputs"])
    batch = torch.export.Dim("batch", min=1, max=65536)
    if name == "unet":
        args: tuple[Any, ...] = (torch.zeros(2, 1, latent_dim), torch.tensor([0, 1], dtype=torch.long))
        dynamic = {"x": {0: batch}, "t": {0: batch}}
    else:
        args = (torch.zeros(2, latent_dim),)
        dynamic = {"latent": {0: batch}}
    path.parent.mkdir(parents=True, exist_ok=True)
    with _quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(
            module, args, dynamo=True, opset_version=OPSET, input_names=in_names, output_names=out_names,
            dynamic_shapes=dynamic, verbose=False, optimize=True,
        )
        program.save(str(path))
    simplify_file_(path)
    _check_onnx(path, in_names, out_names)


def _check_onnx(path: Path, in_names: list[str], out_names: list[str]) -> None:
    import onnx

    onnx.checker.check_model(str(path))  # path form: works for models over 2 GB too
    model = onnx.load(str(path), load_external_data=False)
    got_in = [i.name for i in model.graph.input]
    got_out = [o.name for o in model.graph.output]
    if got_in != in_names or got_out != out_names:
        raise RuntimeError(f"{path}: exported I/O {got_in}->{got_out}, expected {in_names}->{out_names}")


def export_fp32_components(model: nn.Module, stage_dir: Path, progress=None) -> dict[str, dict[str, Any]]:
    """Export the three graphs into ``stage_dir/<component>/model.onnx``; returns manifest entries."""
    latent_dim = model.cfg.latent_dim
    modules = component_modules(model)
    entries = {}
    for name in COMPONENTS:
        rel = f"{name}/model.onnx"
        export_component(name, modules[name], latent_dim, stage_dir / rel)
        entries[name] = {"path": rel, "format": "onnx", "opset": OPSET, **io_spec(latent_dim)[name]}
        if progress:
            progress(name)
    return entries
